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
    """CPU model, usable cores, memory and accelerator, in one line."""
    import torch

    from pipeline_lib.hardware import cpu_model, detect, vector_isa

    cap = detect()
    cpu = cpu_model()
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    flags = ",".join(cap.cpu_flags) or f"{vector_isa()}, no bf16"
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


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of bench/RESULTS.md, stamped with date and command."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    block = f"<!-- {name}:start -->\n{body.strip()}\n\n_Run {stamp}: `{command}`_\n<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
