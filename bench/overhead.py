"""Pipeline overhead (issues 7 and 29): the same training with and without the pipeline around it, before and after.

    python bench/overhead.py [--datasets fpb30k fpb tiny] [--ref COMMIT] [--smoke] [--home warm|cold]
                             [--epochs N] [--repeats N] [--max-rows N] [--fpb-data FILE] [--section NAME]

Datasets: `fpb30k`, a >= 30k-row classification set built from the shipped Financial PhraseBank 50Agree (each
sentence and seeded variations of it: a source prefix, a changed figure; every text a distinct de-duplication key,
so the pipeline keeps them all), 1 epoch; `fpb`, FPB 50Agree with configs/financial_phrasebank.yaml, 3 epochs;
`tiny`: the packaged 360-row sample with configs/default.yaml as is. Each in a fresh throw-away workspace: a git
repository whose data file is `dvc add`ed and committed, a private MLflow sqlite store and a private PREFECT_HOME.
`--home warm` (default) creates Prefect's database and the MLflow store before the timed run, as on any machine that
ran tunepipe before (every scheduled retrain but the first; no step cache, no champion, so every step runs);
`--home cold` leaves both to the timed run, as on a machine's very first run.

`--ref COMMIT` (e.g. 6a4284b) measures that commit's code too, in the same run: its tree is extracted (git archive)
to a temporary folder and every child of the "before" arms runs with PYTHONPATH there (its configs too), alternating
with this checkout's "after" arms on identical workspaces and data.

- raw: a fresh process validates and tokenizes (untimed), imports the training stack, then times `run_step("train")`
  alone: model load, Trainer.train() (per-epoch validation and checkpoints included), saving the best model. The
  Trainer loop alone is also shown (`train_loop_seconds` of the train summary).
- pipeline: `tunepipe run` in a fresh process with the same config and seed. Every output line is time-stamped as it
  arrives; the steps' own `[step] N.Ns` log lines give each step's time (the task body: the step plus storing its
  outputs in the step cache), the gaps between them are the flow's bookkeeping (fingerprints, cache look-ups, Prefect
  task runs), the time before the first flow log line is process start-up (imports, Prefect's ephemeral API, the
  flow run's creation).
- Prefect alone: a fresh process with a fresh PREFECT_HOME imports prefect and runs a one-task flow twice (the
  first pays the ephemeral API's start and the database's creation), then a second process on the same PREFECT_HOME
  does the same (start-up only); and the import cost of the CLI and of the training stack, each in a fresh
  process.

Overhead = everything but training, as a share of the bare train step: (pipeline wall - raw train step wall) / raw
train step wall, and, free of the two arms' run-to-run difference, (pipeline wall - its own train task) / its own
train step. Targets: <= 10 % on the 1-epoch 30k-row run, <= 5 % on FPB's 3-epoch run, evaluate >= 3x the train
step's samples/s. `--smoke`: every dataset cut to a few hundred rows and 1 epoch, to check the bench runs (its
figures mean nothing; written to the `overhead_smoke` section). Writes the `overhead` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _results import FPB_50AGREE, REPO, child_env, child_json, dvc_workspace, machine, write_section

STEPS = ("validate", "tokenize", "train", "export", "evaluate", "gate", "register")
STEP_LINE = re.compile(r"\[(" + "|".join(STEPS) + r")\] (\d+(?:\.\d+)?)s\b")
FLOW_STARTED = re.compile(r"Beginning flow run|Flow run '[^']+' - |\[decide\]")
SERVER_STARTING = re.compile(r"Starting temporary server|Using the kept Prefect API")
FLOW_FINISHED = re.compile(r"Flow run '[^']+' - Finished in state")
LABEL_CHECK = re.compile(r"label check: .*; (\d+(?:\.\d+)?)s \(")  # the validate step's line (issue 28)
TARGETS = {"tiny": ("absolute", 30.0), "fpb": ("ratio", 0.05), "fpb30k": ("ratio", 0.10)}
EVALUATE_TARGET = 3.0  # evaluate's rows/s over the train step's samples/s
SYNTHETIC_ROWS = 32_000  # fpb30k: rows written (every one a distinct de-duplication key)
SMOKE_ROWS = 240
LOADS: list[float] = []  # the 1-minute load average after each arm
PREFIXES = ("", "Update: ", "Report: ", "Company news: ", "Market wire: ", "Press release: ", "Analyst note: ")
SUFFIXES = ("", " (company release)", " , the company said.", " , according to the report.", " (stock exchange notice)")


@dataclass
class Dataset:
    key: str
    config: str  # relative to the code root: the before arm reads its own commit's config
    source: Path
    title: str
    epochs: float | None  # None: the config's own
    name: str = ""


@dataclass
class Code:
    """The code an arm runs: this checkout ("after") or a given commit extracted to a folder ("before")."""

    label: str
    root: Path
    commit: str


def datasets(fpb_data: str, work: Path) -> dict[str, Dataset]:
    from pipeline_lib.data.versions import SEED_DATASET

    return {
        "fpb30k": Dataset(
            "fpb30k",
            "configs/financial_phrasebank.yaml",
            work / "fpb30k.txt",
            f"FPB 50Agree sentences and seeded variations ({SYNTHETIC_ROWS // 1000}k rows)",
            1,
            "fpb30k",
        ),
        "fpb": Dataset("fpb", "configs/financial_phrasebank.yaml", Path(fpb_data), "Financial PhraseBank 50Agree", 3),
        "tiny": Dataset("tiny", "configs/default.yaml", Path(SEED_DATASET), "packaged sample (360 rows)", None),
    }


def write_variations(source: Path, target: Path, rows: int, seed: int = 29) -> int:
    """A PhraseBank-format file of `rows` labelled sentences: each FPB sentence once, then seeded variations of it (a
    source prefix or suffix, one figure changed) until `rows`, every text a distinct de-duplication key (NFKC,
    case-folded, spacing collapsed: `pipeline_lib.data.keys.text_key`) so the pipeline keeps them all."""
    from pipeline_lib.data.keys import text_key

    rng = random.Random(seed)
    lines = source.read_bytes().decode("iso-8859-1").splitlines()
    base = [(text.strip(), label.strip()) for text, sep, label in (line.rpartition("@") for line in lines) if sep]
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []

    def add(text: str, label: str) -> None:
        key = text_key(text)
        if key not in seen:  # a text already written (or one FPB itself repeats) is never written twice
            seen[key] = label
            out.append((text, label))

    for text, label in base:
        add(text, label)
    attempts = 0
    while len(out) < rows and attempts < rows * 20:
        attempts += 1
        text, label = base[rng.randrange(len(base))]
        figures = re.findall(r"\d+", text)
        if figures and rng.random() < 0.5:
            old = rng.choice(figures)
            text = re.sub(rf"\b{old}\b", str(int(old) + rng.randint(1, 97)), text, count=1)
        add(f"{rng.choice(PREFIXES)}{text}{rng.choice(SUFFIXES)}", label)
    target.write_bytes("".join(f"{text}@{label}\n" for text, label in out[:rows]).encode("iso-8859-1"))
    return min(rows, len(out))


def make_workspace(ds: Dataset, max_rows: int | None) -> Path:
    return dvc_workspace(ds.source, f"bench-overhead-{ds.key}-", max_rows)


def overrides(ds: Dataset, epochs: float | None) -> list[str]:
    epochs = epochs or ds.epochs
    sets = [f"data.path=data/{ds.source.name}", *([f"train.epochs={epochs:g}"] if epochs else [])]
    return sets + ([f"data.name={ds.name}"] if ds.name else [])


def code_env(code: Code, **extra: str) -> dict[str, str]:
    """A child's environment running `code`: its root first on PYTHONPATH."""
    return child_env(PYTHONPATH=str(code.root), **extra)


def extract_ref(ref: str) -> Code:
    """The tree of `ref` in a temporary folder (git archive: no worktree, nothing written to the repository)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix=f"bench-overhead-ref-{commit}-"))
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return Code("before", folder, commit)


def this_checkout() -> Code:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
    return Code("after", REPO, commit + ("+dirty" if dirty.stdout.strip() else ""))


# ---- children (each runs in a fresh interpreter) -------------------------------------------------------------


def raw_child(config: str, sets: list[str]) -> dict:
    """validate + tokenize untimed, then the train step alone on the tokenized data."""
    from pipeline_lib.config import load_config
    from pipeline_lib.layout import RunDir, read_json
    from pipeline_lib.steps import run_step

    cfg = load_config(config, [*sets, "paths.store=raw/store", "paths.artifacts=raw/artifacts"])
    run = RunDir(Path("raw/run"))
    rows = run_step("validate", cfg, run).to_dict()["rows"]
    run_step("tokenize", cfg, run)
    import transformers  # noqa: F401  # the training stack is loaded before the clock starts, as in the flow

    import pipeline_lib.training  # noqa: F401

    start = time.perf_counter()
    run_step("train", cfg, run)
    wall = time.perf_counter() - start
    summary = read_json(run.train_summary)
    keys = ("seconds", "train_loop_seconds", "train_samples_per_second", "epochs_run")
    return {"train_wall": wall, "rows": rows, **{k: summary.get(k) for k in keys}}


def prefect_child(kept: bool = False) -> dict:
    """Prefect alone in a fresh process: import, a first one-task flow (ephemeral API start), a second one. `kept`:
    on the API server tunepipe keeps between commands (`flows.prefect_start`, as `tunepipe run` starts it), which
    outlives this process for the next one."""
    api_wait = 0.0
    if kept:
        from flows import prefect_start

        began = time.perf_counter()
        early = prefect_start.start_early()
        if early is not None:
            early.ready()
        api_wait = time.perf_counter() - began  # the server's start (or finding the kept one): the first flow's
    start = time.perf_counter()
    from prefect import flow, task

    imported = time.perf_counter() - start

    @task
    def one() -> int:
        return 1

    @flow
    def trivial() -> int:
        return one()

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        trivial()
        times.append(time.perf_counter() - t0)
    return {"import": imported, "first_flow": api_wait + times[0], "second_flow": times[1]}


def store_child() -> dict:
    """Create the MLflow store that MLFLOW_TRACKING_URI names (tables and migrations), as a first run would."""
    from pipeline_lib.config import load_config
    from pipeline_lib.registry.store import connect

    start = time.perf_counter()
    connect(load_config(None, []))
    return {"seconds": time.perf_counter() - start}


def import_child(modules: list[str]) -> dict:
    import importlib

    start = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return {"seconds": time.perf_counter() - start}


# ---- measurements -------------------------------------------------------------------------------------------


@dataclass
class PipelineRun:
    wall: float
    lines: list[tuple[float, str]]
    steps: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    server_starting: float | None = None  # None: a Prefect server was configured, no ephemeral one
    flow_started: float = 0.0
    flow_finished: float | None = None
    train_summary: dict = field(default_factory=dict)
    evaluate_summary: dict = field(default_factory=dict)
    label_check: float = 0.0  # inside validate: the label check (data.label_issues, issue 28), cold embedding bank

    @classmethod
    def from_lines(cls, wall: float, lines: list[tuple[float, str]]) -> PipelineRun:
        """Read the markers and the steps' `[step] N.Ns` lines from the time-stamped output of `tunepipe run`."""
        result = cls(wall, lines)
        for stamp, text in lines:
            if result.server_starting is None and SERVER_STARTING.search(text):
                result.server_starting = stamp
            if not result.flow_started and FLOW_STARTED.search(text):
                result.flow_started = stamp
            if FLOW_FINISHED.search(text):
                result.flow_finished = stamp
            check = LABEL_CHECK.search(text)
            if check:
                result.label_check = float(check.group(1))
            match = STEP_LINE.search(text)
            if match and match.group(1) not in result.steps:
                result.steps[match.group(1)] = float(match.group(2))
                result.ends[match.group(1)] = stamp
        return result

    def breakdown(self) -> dict[str, float]:
        """Start-up, decide, each step, the gaps between steps, and after the last step; sums to the wall time."""
        server = self.server_starting if self.server_starting is not None else self.flow_started
        rows = {
            "process start until Prefect's API server is launched (before: imports, config check)": server,
            "Prefect API server start or the kept one found, the imports it overlaps, flow run creation": self.flow_started
            - server,
        }
        previous = self.flow_started
        gaps = 0.0
        for name in STEPS:
            if name not in self.steps:
                continue
            began = self.ends[name] - self.steps[name]
            if name == "validate":
                rows["decide (MLflow store, registry look-up), run directory"] = began - previous
            else:
                gaps += began - previous
            rows[name] = self.steps[name]
            if name == "validate" and self.label_check:
                rows[name] -= self.label_check
                rows["validate: the label check (issue 28; cold embedding bank, its default budget)"] = self.label_check
            previous = self.ends[name]
        rows["between steps (fingerprints, cache look-ups, task runs)"] = gaps
        finished = self.flow_finished if self.flow_finished is not None else previous
        rows["flow run end (after register)"] = finished - previous
        rows["after the flow: summary, API shutdown, process exit"] = self.wall - finished
        return rows

    def not_training(self) -> float:
        """Everything but the train task, seconds."""
        return self.wall - self.steps["train"]


def pipeline_env(code: Code, root: Path) -> dict[str, str]:
    return code_env(
        code, PREFECT_HOME=str(root / "prefect-home"), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}"
    )


def warm_up(code: Code, root: Path) -> None:
    """What a machine that ran tunepipe before has (every retrain but the first): Prefect's database in
    PREFECT_HOME and the MLflow store created. No step cache, no champion: the timed run still does every step."""
    env = pipeline_env(code, root)
    child_json(self_command("--child", "kept" if code_keeps_server(code) else "prefect"), root, env)
    child_json(self_command("--child", "store"), root, env)


def code_keeps_server(code: Code) -> bool:
    """Whether `code` keeps Prefect's API server between commands (flows/prefect_keeper.py, issue 29)."""
    return (code.root / "flows" / "prefect_keeper.py").is_file()


def run_pipeline(ds: Dataset, code: Code, root: Path, epochs: float | None) -> PipelineRun:
    """`tunepipe run` in a fresh process running `code`; every line stamped on arrival."""
    tunepipe = Path(sys.executable).parent / "tunepipe"  # imports flows.cli from PYTHONPATH: the arm's code
    command = [str(tunepipe)] if tunepipe.exists() else [sys.executable, "-m", "flows.cli"]
    command += ["run", "--config", str(code.root / ds.config)]
    command += [a for s in overrides(ds, epochs) for a in ("--set", s)]
    env = pipeline_env(code, root)
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip()))
    code_ = proc.wait()
    wall = time.perf_counter() - start
    log = Path(tempfile.gettempdir()) / f"bench-overhead-{ds.key}-{code.label}.log"
    log.write_text("".join(f"{stamp:9.3f}  {text}\n" for stamp, text in lines))
    if code_ != 0:
        raise RuntimeError(f"tunepipe run failed (exit {code_}), its output with arrival times: {log}")
    result = PipelineRun.from_lines(wall, lines)
    missing = [s for s in STEPS if s not in result.steps]
    if missing:
        raise RuntimeError(f"no timing line for {missing} in the run's output: {log}")
    runs = sorted((root / "artifacts" / "runs").glob("*/train/summary.json"))
    result.train_summary = json.loads(runs[-1].read_text()) if runs else {}
    return result


def self_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def measure(
    ds: Dataset, codes: list[Code], epochs: float | None, max_rows: int | None, repeats: int, warm: bool
) -> dict[str, dict]:
    """Per code, both arms `repeats` times, each in a fresh workspace (codes alternate, raw before pipeline); the
    fastest of each arm is kept."""
    out: dict[str, dict] = {code.label: {"raws": [], "pipes": []} for code in codes}
    for _ in range(repeats):
        for code in codes:
            root = make_workspace(ds, max_rows)
            try:
                raw_env = code_env(code, PREFECT_HOME=str(root / "prefect-home-raw"))
                config = str(code.root / ds.config)
                command = self_command("--child", "raw", "--config", config, *overrides(ds, epochs))
                out[code.label]["raws"].append(child_json(command, root, raw_env))
                print(f"[{ds.key} {code.label}] raw train step {out[code.label]['raws'][-1]['train_wall']:.1f}s")
                if warm:
                    warm_up(code, root)
                out[code.label]["pipes"].append(run_pipeline(ds, code, root, epochs))
                print(f"[{ds.key} {code.label}] tunepipe run {out[code.label]['pipes'][-1].wall:.1f}s", flush=True)
                LOADS.append(os.getloadavg()[0])
            finally:
                stop_kept_server(root / "prefect-home")
                shutil.rmtree(root, ignore_errors=True)
    return {
        label: {
            "raw": min(arms["raws"], key=lambda r: r["train_wall"]),
            "pipeline": min(arms["pipes"], key=lambda p: p.wall),
            "all": ([r["train_wall"] for r in arms["raws"]], [p.wall for p in arms["pipes"]]),
        }
        for label, arms in out.items()
    }


def fresh_process_costs(code: Code) -> dict:
    """Prefect's ephemeral start-up (fresh PREFECT_HOME, then the same one again) and the import costs, each in a
    fresh process running `code`."""
    home = Path(tempfile.mkdtemp(prefix="bench-overhead-prefect-"))
    try:
        env = code_env(code, PREFECT_HOME=str(home))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        interpreter = time.perf_counter() - start
        costs = {
            "interpreter": interpreter,
            "prefect": child_json(self_command("--child", "prefect"), home, env),
            "prefect_again": child_json(self_command("--child", "prefect"), home, env),
            **(
                {
                    "kept_first": child_json(self_command("--child", "kept"), home, env),
                    "kept_next": child_json(self_command("--child", "kept"), home, env),
                }
                if code_keeps_server(code)
                else {}
            ),
            "cli": child_json(self_command("--child", "import", "flows.cli", "flows.retrain"), home, env)["seconds"],
            "training_stack": child_json(
                self_command("--child", "import", "torch", "transformers", "pipeline_lib.training"), home, env
            )["seconds"],
        }
    finally:
        stop_kept_server(home)
        shutil.rmtree(home, ignore_errors=True)
    return costs


def stop_kept_server(home: Path) -> None:
    """Stop a kept Prefect API server of `home` (it would stop by itself once `home` is removed, within a second)."""
    record = home / "tunepipe-api.json"
    if record.is_file():
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            os.kill(int(json.loads(record.read_text())["pid"]), 15)


# ---- report -------------------------------------------------------------------------------------------------


def verdict(key: str, seconds: float, ratio: float) -> str:
    kind, limit = TARGETS[key]
    if kind == "absolute":
        return f"<= {limit:.0f} s: {'met' if seconds <= limit else 'NOT met'}"
    return f"<= {limit:.0%}: {'met' if ratio <= limit else 'NOT met'}"


def evaluate_speed(result: dict) -> tuple[float, float]:
    """Evaluate's test rows per second of its step, and the train step's training samples per second."""
    raw, pipe = result["raw"], result["pipeline"]
    rows = raw["rows"]["test"] / pipe.steps["evaluate"] if pipe.steps.get("evaluate") else 0.0
    return rows, float(pipe.train_summary.get("train_samples_per_second") or raw.get("train_samples_per_second") or 0)


def summary_rows(results: dict[str, dict[str, dict]], data: dict[str, Dataset]) -> list[str]:
    table = [
        "| data | code | rows (train/val/test) | epochs run | raw train step s | tunepipe run s | all but training "
        "s | vs raw train step | vs its own train step | target | without the label check: s, vs raw train step, "
        "target | evaluate rows/s : train samples/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_code in results.items():
        for label, result in by_code.items():
            raw, pipe = result["raw"], result["pipeline"]
            over = pipe.wall - raw["train_wall"]
            ratio = over / raw["train_wall"]
            own = pipe.not_training() / pipe.train_summary["seconds"] if pipe.train_summary.get("seconds") else 0.0
            rows = "/".join(str(raw["rows"][s]) for s in ("train", "validation", "test"))
            eval_rate, train_rate = evaluate_speed(result)
            speed = f"{eval_rate:.0f} : {train_rate:.0f} = {eval_rate / train_rate:.1f}x" if train_rate else "?"
            table.append(
                f"| {data[key].title} | {label} | {rows} | {pipe.train_summary.get('epochs_run', '?')} | "
                f"{raw['train_wall']:.1f} | {pipe.wall:.1f} | {over:.1f} | {ratio:.1%} | {own:.1%} | "
                f"{verdict(key, over, ratio)} (own: {verdict(key, pipe.not_training(), own).split(': ')[1]}) | "
                f"{over - pipe.label_check:.1f}, {(over - pipe.label_check) / raw['train_wall']:.1%}, "
                f"{verdict(key, over - pipe.label_check, (over - pipe.label_check) / raw['train_wall'])} | "
                f"{speed} |"
            )
    return table


def headline_rows(results: dict[str, dict[str, dict]], data: dict[str, Dataset]) -> list[tuple[str, str, str]]:
    """The summary table's rows: per dataset, this checkout's overhead with and without the label check."""
    rows = []
    for key, by_code in results.items():
        label = "after" if "after" in by_code else next(iter(by_code))
        raw, pipe = by_code[label]["raw"], by_code[label]["pipeline"]
        over = pipe.wall - raw["train_wall"]
        kind, limit = TARGETS[key]
        figure = (
            f"all but training {over:.1f} s = {over / raw['train_wall']:.1%} of the train step "
            f"({raw['train_wall']:.0f} s); without the label check {over - pipe.label_check:.1f} s = "
            f"{(over - pipe.label_check) / raw['train_wall']:.1%}"
        )
        own = pipe.train_summary.get("seconds")
        if own:  # free of the two arms' run-to-run difference in training speed
            figure += f"; against its own train step ({own:.0f} s): {pipe.not_training():.1f} s = "
            figure += f"{pipe.not_training() / own:.1%}"
        target = f"≤ {limit:.0f} s" if kind == "absolute" else f"≤ {limit:.0%} of the train step"
        rows.append((f"Pipeline overhead: {data[key].title}", figure, target))
    return rows


def breakdown_table(results: dict[str, dict[str, dict]]) -> list[str]:
    columns = [(key, label) for key, by_code in results.items() for label in by_code]
    breakdowns = {(key, label): results[key][label]["pipeline"].breakdown() for key, label in columns}
    labels = list(dict.fromkeys(row for b in breakdowns.values() for row in b))
    table = ["| part of `tunepipe run`, s | " + " | ".join(f"{key} {label}" for key, label in columns) + " |"]
    table.append("|---|" + "---|" * len(columns))
    for row in labels:
        table.append(f"| {row} | " + " | ".join(f"{breakdowns[c].get(row, 0.0):.1f}" for c in columns) + " |")
    totals = [results[k][lb]["pipeline"] for k, lb in columns]
    table.append("| **all but training** | " + " | ".join(f"**{p.not_training():.1f}**" for p in totals) + " |")
    table.append("| **total (wall)** | " + " | ".join(f"**{p.wall:.1f}**" for p in totals) + " |")
    return table


def costs_table(costs: dict[str, dict]) -> list[str]:
    labels = list(costs)
    rows = [
        ("Python interpreter start (`python -c pass`)", lambda c: c["interpreter"]),
        ("import the CLI and the flow (`flows.cli`, `flows.retrain`)", lambda c: c["cli"]),
        ("import the training stack (torch, transformers, `pipeline_lib.training`)", lambda c: c["training_stack"]),
        ("`import prefect`", lambda c: c["prefect"]["import"]),
        (
            "first one-task flow, fresh PREFECT_HOME (API start + database creation)",
            lambda c: c["prefect"]["first_flow"],
        ),
        (
            "first one-task flow, next process, same PREFECT_HOME (API start)",
            lambda c: c["prefect_again"]["first_flow"],
        ),
        ("second one-task flow in the same process", lambda c: c["prefect"]["second_flow"]),
        (
            "tunepipe's kept API: first one-task flow, the command that starts it (same PREFECT_HOME)",
            lambda c: c["kept_first"]["first_flow"] if "kept_first" in c else float("nan"),
        ),
        (
            "tunepipe's kept API: first one-task flow of the next command (server kept, warm machine)",
            lambda c: c["kept_next"]["first_flow"] if "kept_next" in c else float("nan"),
        ),
    ]
    table = ["| what, s (fresh process) | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    table += [f"| {name} | " + " | ".join(f"{get(costs[lb]):.2f}" for lb in labels) + " |" for name, get in rows]
    return table


def report(
    results: dict[str, dict[str, dict]],
    data: dict[str, Dataset],
    costs: dict[str, dict],
    codes: list[Code],
    args: argparse.Namespace,
) -> str:
    home_note = (
        "a machine that ran tunepipe before: PREFECT_HOME's database and the MLflow store already created, no step "
        "cache, no champion"
        if args.home == "warm"
        else "a machine that never ran tunepipe: fresh PREFECT_HOME and MLflow store, created during the run"
    )
    cut = f" Data cut to at most {args.max_rows} rows (every k-th row)." if args.max_rows else ""
    epochs = (
        f"train.epochs={args.epochs:g} everywhere"
        if args.epochs
        else "train.epochs=1 on fpb30k, 3 on fpb, the config's own on tiny"
    )
    code_note = ", ".join(f"{c.label} = {c.commit}" for c in codes)
    notes = []
    for key, by_code in results.items():
        for label, result in by_code.items():
            if len(result["all"][0]) > 1:
                raws, walls = result["all"]
                notes.append(
                    f"- {key} {label}: all runs (raw train step / tunepipe run, s): "
                    f"{', '.join(f'{r:.1f}' for r in raws)} / {', '.join(f'{w:.1f}' for w in walls)}; the fastest "
                    "of each arm is shown."
                )
    title = "## Pipeline overhead: everything but training, before and after (issues 7 and 29)"
    return "\n".join(
        [
            title + (" -- SMOKE: tiny data, figures mean nothing" if args.smoke else ""),
            "",
            f'Code: {code_note}. Raw = `run_step("train")` alone on already tokenized data in a fresh process (model '
            "load, Trainer loop with per-epoch validation, saving the best model); pipeline = `tunepipe run` in a "
            f"fresh process ({home_note}; git + DVC workspace; MLflow sqlite), same config, data and seed, {epochs}."
            f"{cut} All but training = pipeline wall - train step; shown against the raw arm's train step and, free "
            "of the two arms' run-to-run difference, against the pipeline's own train step (its train task minus "
            "storing the outputs).",
            "",
            *summary_rows(results, data),
            "",
            "Where the time of `tunepipe run` goes (the steps' own log lines; train is the trained work itself):",
            "",
            *breakdown_table(results),
            "",
            *notes,
            "",
            "Fixed costs, each in a fresh process:",
            "",
            *costs_table(costs),
            "",
            f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f} {load_note()}.",
        ]
    )


def load_note() -> str:
    """Whether other jobs shared the machine: the benchmark's own threads load it up to its core count."""
    highest = max([os.getloadavg()[0], *LOADS])
    if highest > len(os.sched_getaffinity(0)) + 0.5:
        return (
            f"(at most {highest:.1f} after an arm: above the core count, other jobs shared the machine and the "
            "arms' times are not comparable)"
        )
    return f"(at most {highest:.1f} after an arm: the benchmark's own threads, no other job shared the machine)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=["fpb30k", "fpb", "tiny"], default=["fpb30k", "fpb"])
    parser.add_argument("--ref", help="also measure this commit's code (e.g. 6a4284b), in the same run")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_ROWS} rows, 1 epoch: check the bench runs")
    parser.add_argument("--epochs", type=float, default=None, help="train.epochs for every arm (default: dataset's)")
    parser.add_argument("--max-rows", type=int, default=None, help="use at most N rows of each data file (checks)")
    parser.add_argument("--repeats", type=int, default=1, help="run both arms N times, keep the fastest of each")
    parser.add_argument("--fpb-data", default=str(FPB_50AGREE))
    parser.add_argument(
        "--home",
        choices=["warm", "cold"],
        default="warm",
        help="warm: Prefect's database and the MLflow store exist before the timed run (every retrain but a "
        "machine's first); cold: both are created during it",
    )
    parser.add_argument("--section", default=None, help="RESULTS.md section (default: overhead, or overhead_smoke)")
    parser.add_argument("--child", choices=["raw", "prefect", "kept", "store", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child = {
            "raw": lambda: raw_child(args.config, args.rest),
            "prefect": prefect_child,
            "kept": lambda: prefect_child(kept=True),
            "store": store_child,
            "import": lambda: import_child(args.rest),
        }[args.child]
        print(json.dumps(child()), flush=True)
        return

    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()
    if args.smoke:
        args.max_rows, args.epochs = args.max_rows or SMOKE_ROWS, args.epochs or 1
    section = args.section or ("overhead_smoke" if args.smoke else "overhead")
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-data-"))
    codes = [this_checkout()]
    try:
        if args.ref:
            codes.insert(0, extract_ref(args.ref))
        data = datasets(args.fpb_data, work)
        if "fpb30k" in args.datasets and Path(args.fpb_data).is_file():
            written = write_variations(Path(args.fpb_data), data["fpb30k"].source, SYNTHETIC_ROWS)
            print(f"[fpb30k] {written} rows written to {data['fpb30k'].source}", flush=True)
        for key in args.datasets:
            if not data[key].source.is_file():
                parser.error(f"{key}: no data file {data[key].source} (--fpb-data FILE)")
        costs = {code.label: fresh_process_costs(code) for code in codes}
        results = {
            key: measure(data[key], codes, args.epochs, args.max_rows, args.repeats, args.home == "warm")
            for key in args.datasets
        }
        body = report(results, data, costs, codes, args)
        headline = headline_rows(results, data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for code in codes:
            if code.label == "before":
                shutil.rmtree(code.root, ignore_errors=True)
    write_section(section, body, headline)
    print(body)


if __name__ == "__main__":
    main()
