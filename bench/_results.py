"""What every benchmark shares: the repository and the real data beside it, the machine's description, the
library steps run in a throw-away store, and the section writer for RESULTS.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # the real corpora (never copied into the repository)
FPB_50AGREE = SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt"
LIBRARY_STEPS = ("validate", "tokenize", "train", "evaluate")  # what a quality benchmark runs: no registry


def machine() -> str:
    """CPU model, usable cores (vector ISA, bf16 flags), memory and accelerator, in one line."""
    import torch

    from pipeline_lib.hardware import cpu_model, detect, vector_isa

    cap = detect()
    cpu = cpu_model()
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    flags = f"{vector_isa()}, " + (",".join(cap.cpu_flags) or "no bf16")  # the vector ISA timings depend on
    return f"{cpu}, {cap.cores} cores ({flags}), {mem_kb / 2**20:.0f} GiB, {gpu}; torch {torch.__version__}"


# FLOP (or int8 op) per cycle per core: AVX-512 FMA fp32 (2 units x 16 lanes x 2), AMX bf16 as issue 9 defines it,
# AVX-512 VNNI int8 (2 units x 64 multiply-adds x 2)
OPS_PER_CYCLE = {"fp32": 64, "bf16": 1024, "int8": 256}


def cpu_ghz() -> float:
    """The fastest clock /proc/cpuinfo reports, in GHz (2.0 when it reports none)."""
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if "cpu MHz" in line]
    return (max(mhz) if mhz else 2000.0) / 1000


def peak_flops(precision: str, cores: int) -> float:
    """The machine's peak for `precision` (fp32, bf16 or int8) on `cores` cores, per second."""
    return cores * cpu_ghz() * 1e9 * OPS_PER_CYCLE[precision]


def timed_steps(cfg: Any, run: Any, steps: tuple[str, ...]) -> tuple[dict[str, dict], dict[str, float]]:
    """Run the library's `steps` in order on `run`: each step's summary and wall seconds, by step name."""
    from pipeline_lib.steps import run_step

    results, seconds = {}, {}
    for step in steps:
        start = time.perf_counter()
        results[step] = run_step(step, cfg, run).to_dict()
        seconds[step] = time.perf_counter() - start
        print(f"[{step}] {seconds[step]:.0f} s", flush=True)
    return results, seconds


def train_and_score(
    config: str | Path | list[str], overrides: list[str], steps: tuple[str, ...] = LIBRARY_STEPS
) -> tuple[Any, dict[str, dict], dict[str, float]]:
    """Load `config` (one file, or files layered in order: a base and a tuned overlay) with `overrides` and run the library's `steps` in a throw-away run directory and store:
    the config, each step's summary and its wall seconds."""
    import tempfile

    from pipeline_lib.config import load_config
    from pipeline_lib.environment import apply_quiet_env
    from pipeline_lib.layout import RunDir

    apply_quiet_env()
    cfg = load_config(config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"store": f"{tmp}/store"})})
        results, seconds = timed_steps(cfg, RunDir(Path(tmp) / "run"), steps)
    return cfg, results, seconds


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every child: offline, quiet, unbuffered, never a team Prefect server."""
    from pipeline_lib.environment import QUIET_ENV

    env = {**QUIET_ENV, **os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PREFECT_API_URL", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def subset(source: Path, target: Path, max_rows: int | None) -> None:
    """Copy the data file, or every k-th row of it (header kept for CSV) so that all classes stay in."""
    if not max_rows:
        shutil.copyfile(source, target)
        return
    lines = source.read_bytes().splitlines(keepends=True)
    header, body = (lines[:1], lines[1:]) if source.suffix == ".csv" else ([], lines)
    step = max(1, -(-len(body) // max_rows))
    target.write_bytes(b"".join(header + body[::step][:max_rows]))


def child_json(command: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run a fresh process that prints one JSON object as its last stdout line."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dvc_workspace(source: Path, prefix: str, max_rows: int | None = None) -> Path:
    """A throw-away project as `tunepipe run` sees one: a git repository whose data file (`data/<name>`, a copy of
    `source` or every k-th row of it) is `dvc add`ed with a local remote and committed."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "data").mkdir()
    subset(source, root / "data" / source.name, max_rows)
    (root / ".gitignore").write_text(".tunepipe/\nartifacts/\nprefect-home/\nmlflow.db\nraw/\n")
    env = child_env()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "bench@example.com"],
        ["git", "config", "user.name", "bench"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(root / "dvc-remote")],
        [sys.executable, "-m", "dvc", "add", "-q", f"data/{source.name}"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "data"],
    ):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return root


SUMMARY = "summary"  # the generated table at the top of RESULTS.md: one row per question, owned by its section
SUMMARY_HEAD = [
    "## Summary: the latest figure of each question",
    "",
    "Generated: each benchmark, when it writes its section, replaces the rows it owns (last column). Older figures are",
    "in `bench/history/` (a file per replaced section, dated, with its commit) and in git history.",
    "",
    "| question | latest figure | target | measured on | section |",
    "|---|---|---|---|---|",
]
HISTORY = Path(__file__).with_name("history")
BLOCK = re.compile(r"<!-- (?P<name>[^ ]+):start -->\n(?P<body>.*?)\n<!-- (?P=name):end -->", re.S)


def question(title: str) -> str:
    """What a `## ` title asks, as ../shared/hooks/before-stop compares titles: the text before any `(` or `:`.
    Two sections with the same question are one too many: the older one moves to bench/history/."""
    return re.sub(r":.*", "", re.sub(r"\s*\(.*", "", title.strip())).strip()


def _title(body: str) -> str:
    return next((line for line in body.splitlines() if line.startswith("## ")), "")


def commit() -> str:
    """The repository's commit (short), `+dirty` when the work tree has changes to tracked files other than
    RESULTS.md itself (which an earlier bench of the same session may have written)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    status = ["git", "status", "--porcelain", "-uno", "--", "."]
    if RESULTS.resolve().is_relative_to(REPO):
        status.append(f":(exclude){RESULTS.resolve().relative_to(REPO)}")
    dirty = subprocess.run(status, cwd=REPO, capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def short_machine() -> str:
    """CPU model, cores and vector ISA (with bf16 where the CPU has it), for the summary table."""
    from pipeline_lib.hardware import cpu_bf16_flags, cpu_model, usable_cores, vector_isa

    return f"{cpu_model()}, {usable_cores()} cores, {vector_isa()}{' + bf16' if cpu_bf16_flags() else ''}"


def recorded_commit(text: str, start: int, end: int) -> str:
    """The newest commit among the lines of RESULTS.md from character `start` to `end` (who wrote those figures)."""
    if not RESULTS.resolve().is_relative_to(REPO):
        return "not committed"
    first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
    done = subprocess.run(
        ["git", "blame", "--line-porcelain", "-L", f"{first},{last}", "--", str(RESULTS.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    times: dict[str, int] = {}
    current = ""
    for line in done.stdout.splitlines():
        if re.match(r"^[0-9a-f]{40} ", line):
            current = line[:40]
        elif line.startswith("committer-time "):
            times[current] = int(line.split()[1])
    if not times:
        return "not committed"
    newest = max(times, key=times.get)
    return "not committed" if set(newest) == {"0"} else newest[:10]


def archive(name: str, block: str, text: str, start: int, end: int, replaced_by: str) -> Path:
    """Move one section's block to bench/history/<date>-<name>.md, dated by its run stamp, with its commit."""
    found = re.search(r"_Run (\d{4}-\d{2}-\d{2})", block)
    date = found.group(1) if found else datetime.now(timezone.utc).strftime("%Y-%m-%d")
    HISTORY.mkdir(exist_ok=True)
    target = HISTORY / f"{date}-{name}.md"
    n = 2
    while target.exists():
        target, n = HISTORY / f"{date}-{name}-{n}.md", n + 1
    moved = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    header = (
        f"# `{name}`, {date}\n\nMoved out of bench/RESULTS.md on {moved}, replaced by its section `{replaced_by}`. "
        f"Figures recorded in commit {recorded_commit(text, start, end)}.\n\n"
    )
    target.write_text(header + block.strip() + "\n")
    return target


def summary_rows(text: str) -> list[str]:
    """The summary table's rows (each ends with its owner section's name in backticks)."""
    found = re.search(rf"<!-- {SUMMARY}:start -->(.*?)<!-- {SUMMARY}:end -->", text, re.S)
    lines = found.group(1).splitlines() if found else []
    return [line for line in lines if line.startswith("| ") and line.rstrip().endswith("` |")]


def _owner(row: str) -> str:
    return row.rstrip().rstrip("|").rsplit("|", 1)[-1].strip().strip("`")


def write_section(name: str, body: str, summary: list[tuple[str, str, str]] | tuple = ()) -> None:
    """Write the section `name` of bench/RESULTS.md, stamped with date, command, commit and machine, and its rows
    `(question, latest figure, target)` of the summary table at the top. A section it replaces, and any other
    section asking the same question (the same `## ` title before `(` or `:`), moves to bench/history/, and the
    summary rows those owned go."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    where, sha = short_machine(), commit()
    block = (
        f"<!-- {name}:start -->\n{body.strip()}\n\n_Run {stamp} at commit {sha} on {where}: `{command}`_\n"
        f"<!-- {name}:end -->"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    asked = question(_title(body))
    stale = [
        match
        for match in BLOCK.finditer(text)
        if match.group("name") == name
        or (match.group("name") != SUMMARY and asked and question(_title(match.group("body"))) == asked)
    ]
    for match in stale:
        archive(match.group("name"), match.group(0), text, match.start(), match.end(), name)
    gone = {match.group("name") for match in stale}
    if stale:
        first = stale[0]
        text = text[: first.start()] + "\0" + text[first.end() :]
        for match in stale[1:]:
            text = text.replace(match.group(0) + "\n\n", "").replace(match.group(0), "")
        text = text.replace("\0", block)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    rows = [row for row in summary_rows(text) if _owner(row) not in gone | {name}]
    rows += [
        f"| {q} | {figure} | {target} | {where}, {stamp[:10]}, {sha} | `{name}` |" for q, figure, target in summary
    ]
    write_summary(text, rows)


def write_summary(text: str, rows: list[str]) -> None:
    """RESULTS.md with the summary table holding `rows`, right under the file's title."""
    block = f"<!-- {SUMMARY}:start -->\n" + "\n".join([*SUMMARY_HEAD, *rows]) + f"\n<!-- {SUMMARY}:end -->"
    pattern = re.compile(rf"<!-- {SUMMARY}:start -->.*?<!-- {SUMMARY}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{block}\n\n{rest.lstrip()}"
    RESULTS.write_text(text.rstrip() + "\n")
