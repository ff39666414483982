"""Pipeline overhead (issue 7): the same training with and without the pipeline around it.

    python bench/overhead.py [--datasets tiny fpb] [--home warm|cold] [--epochs N] [--repeats N] [--max-rows N]
                             [--fpb-data FILE] [--section NAME]

Per dataset (`tiny`: the packaged 360-row sample with configs/default.yaml; `fpb`: Financial PhraseBank 50Agree with
configs/financial_phrasebank.yaml), each config as is unless --epochs is given, in a fresh throw-away workspace: a git
repository whose data file is `dvc add`ed and committed, a private MLflow sqlite store and a private PREFECT_HOME.
`--home warm` (default) creates Prefect's database and the MLflow store before the timed run, as on any machine that
ran tunepipe before (every scheduled retrain but the first; no step cache, no champion, so every step runs);
`--home cold` leaves both to the timed run, as on a machine's very first run.

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

Overhead = (pipeline wall - raw train step wall) / raw train step wall. Targets: <= 5 % on 50Agree, <= 30 s on the
tiny data. Writes the `overhead` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _results import FPB_50AGREE, REPO, child_env, child_json, dvc_workspace, machine, write_section

STEPS = ("validate", "tokenize", "train", "evaluate", "export", "gate", "register")
STEP_LINE = re.compile(r"\[(" + "|".join(STEPS) + r")\] (\d+(?:\.\d+)?)s\b")
FLOW_STARTED = re.compile(r"Beginning flow run|Flow run '[^']+' - |\[decide\]")
SERVER_STARTING = re.compile(r"Starting temporary server")
FLOW_FINISHED = re.compile(r"Flow run '[^']+' - Finished in state")
TARGETS = {"tiny": ("absolute", 30.0), "fpb": ("ratio", 0.05)}


@dataclass
class Dataset:
    key: str
    config: Path
    source: Path
    title: str


def datasets(fpb_data: str) -> dict[str, Dataset]:
    from pipeline_lib.data.versions import SEED_DATASET

    return {
        "tiny": Dataset("tiny", REPO / "configs/default.yaml", Path(SEED_DATASET), "packaged sample (360 rows)"),
        "fpb": Dataset(
            "fpb", REPO / "configs/financial_phrasebank.yaml", Path(fpb_data), "Financial PhraseBank 50Agree"
        ),
    }


def make_workspace(ds: Dataset, max_rows: int | None) -> Path:
    return dvc_workspace(ds.source, f"bench-overhead-{ds.key}-", max_rows)


def overrides(ds: Dataset, epochs: float | None) -> list[str]:
    return [f"data.path=data/{ds.source.name}", *([f"train.epochs={epochs:g}"] if epochs else [])]


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
    return {"train_wall": wall, "rows": rows, **{k: summary.get(k) for k in ("seconds", "train_loop_seconds")}}


def prefect_child() -> dict:
    """Prefect alone in a fresh process: import, a first one-task flow (ephemeral API start), a second one."""
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
    return {"import": imported, "first_flow": times[0], "second_flow": times[1]}


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
            match = STEP_LINE.search(text)
            if match and match.group(1) not in result.steps:
                result.steps[match.group(1)] = float(match.group(2))
                result.ends[match.group(1)] = stamp
        return result

    def breakdown(self) -> dict[str, float]:
        """Start-up, decide, each step, the gaps between steps, and after the last step; sums to the wall time."""
        server = self.server_starting if self.server_starting is not None else self.flow_started
        rows = {
            "process start: imports, config check": server,
            "Prefect ephemeral API start, flow run creation": self.flow_started - server,
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
            previous = self.ends[name]
        rows["between steps (fingerprints, cache look-ups, task runs)"] = gaps
        finished = self.flow_finished if self.flow_finished is not None else previous
        rows["flow run end (after register)"] = finished - previous
        rows["after the flow: summary, API shutdown, process exit"] = self.wall - finished
        return rows


def pipeline_env(root: Path) -> dict[str, str]:
    return child_env(PREFECT_HOME=str(root / "prefect-home"), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")


def warm_up(root: Path) -> None:
    """What a machine that ran tunepipe before has (every retrain but the first): Prefect's database in
    PREFECT_HOME and the MLflow store created. No step cache, no champion: the timed run still does every step."""
    env = pipeline_env(root)
    child_json(self_command("--child", "prefect"), root, env)
    child_json(self_command("--child", "store"), root, env)


def run_pipeline(ds: Dataset, root: Path, epochs: float | None) -> PipelineRun:
    """`tunepipe run` in a fresh process; every line stamped on arrival."""
    tunepipe = Path(sys.executable).parent / "tunepipe"
    command = [str(tunepipe)] if tunepipe.exists() else [sys.executable, "-m", "flows.cli"]
    command += ["run", "--config", str(ds.config), *[a for s in overrides(ds, epochs) for a in ("--set", s)]]
    env = pipeline_env(root)
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip()))
    code = proc.wait()
    wall = time.perf_counter() - start
    log = Path(tempfile.gettempdir()) / f"bench-overhead-{ds.key}.log"
    log.write_text("".join(f"{stamp:9.3f}  {text}\n" for stamp, text in lines))
    if code != 0:
        raise RuntimeError(f"tunepipe run failed (exit {code}), its output with arrival times: {log}")
    result = PipelineRun.from_lines(wall, lines)
    missing = [s for s in STEPS if s not in result.steps]
    if missing:
        raise RuntimeError(f"no timing line for {missing} in the run's output: {log}")
    runs = sorted((root / "artifacts" / "runs").glob("*/train/summary.json"))
    result.train_summary = json.loads(runs[-1].read_text()) if runs else {}
    return result


def self_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def measure(ds: Dataset, epochs: float | None, max_rows: int | None, repeats: int, warm: bool) -> dict:
    """Both arms `repeats` times, alternating, each in a fresh workspace; the fastest of each arm is kept."""
    raws, pipes = [], []
    for _ in range(repeats):
        root = make_workspace(ds, max_rows)
        try:
            raw_env = child_env(PREFECT_HOME=str(root / "prefect-home-raw"))
            command = self_command("--child", "raw", "--config", str(ds.config), *overrides(ds, epochs))
            raws.append(child_json(command, root, raw_env))
            print(f"[{ds.key}] raw train step {raws[-1]['train_wall']:.1f}s", flush=True)
            if warm:
                warm_up(root)
            pipes.append(run_pipeline(ds, root, epochs))
            print(f"[{ds.key}] tunepipe run {pipes[-1].wall:.1f}s", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "raw": min(raws, key=lambda r: r["train_wall"]),
        "pipeline": min(pipes, key=lambda p: p.wall),
        "all": ([r["train_wall"] for r in raws], [p.wall for p in pipes]),
    }


def fresh_process_costs() -> dict:
    """Prefect's ephemeral start-up (fresh PREFECT_HOME, then the same one again) and the import costs, each in a
    fresh process."""
    home = Path(tempfile.mkdtemp(prefix="bench-overhead-prefect-"))
    try:
        env = child_env(PREFECT_HOME=str(home))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        interpreter = time.perf_counter() - start
        costs = {
            "interpreter": interpreter,
            "prefect": child_json(self_command("--child", "prefect"), home, env),
            "prefect_again": child_json(self_command("--child", "prefect"), home, env),
            "cli": child_json(self_command("--child", "import", "flows.cli", "flows.retrain"), REPO, env)["seconds"],
            "training_stack": child_json(
                self_command("--child", "import", "torch", "transformers", "pipeline_lib.training"), REPO, env
            )["seconds"],
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return costs


# ---- report -------------------------------------------------------------------------------------------------


def verdict(key: str, seconds: float, ratio: float) -> str:
    kind, limit = TARGETS[key]
    if kind == "absolute":
        return f"<= {limit:.0f} s: {'met' if seconds <= limit else 'NOT met'}"
    return f"<= {limit:.0%}: {'met' if ratio <= limit else 'NOT met'}"


def report(results: dict[str, dict], data: dict[str, Dataset], costs: dict, args: argparse.Namespace) -> str:

    summary = [
        "| data | rows (train/val/test) | epochs run | raw train step s | Trainer loop s | tunepipe run s | "
        "overhead s | overhead | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = list(results)
    breakdowns = {key: results[key]["pipeline"].breakdown() for key in keys}
    for key in keys:
        raw, pipe = results[key]["raw"], results[key]["pipeline"]
        over = pipe.wall - raw["train_wall"]
        ratio = over / raw["train_wall"]
        rows = "/".join(str(raw["rows"][s]) for s in ("train", "validation", "test"))
        summary.append(
            f"| {data[key].title} | {rows} | {pipe.train_summary.get('epochs_run', '?')} | {raw['train_wall']:.1f} | "
            f"{raw['train_loop_seconds'] or 0:.1f} | {pipe.wall:.1f} | {over:.1f} | {ratio:.1%} | "
            f"{verdict(key, over, ratio)} |"
        )

    labels = list(dict.fromkeys(label for key in keys for label in breakdowns[key]))
    table = ["| part of `tunepipe run` | " + " | ".join(f"{k} s | {k} share of overhead" for k in keys) + " |"]
    table.append("|---|" + "---|---|" * len(keys))
    for label in labels:
        cells = []
        for key in keys:
            seconds = breakdowns[key].get(label, 0.0)
            overhead = results[key]["pipeline"].wall - results[key]["raw"]["train_wall"]
            share = "" if label == "train" else f"{seconds / overhead:.0%}" if overhead > 0 else ""
            cells += [f"{seconds:.1f}", share]
        table.append(f"| {label} | " + " | ".join(cells) + " |")
    table.append("| **total (wall)** | " + " | ".join(f"**{results[k]['pipeline'].wall:.1f}** | " for k in keys) + "|")

    train_notes = []
    for key in keys:
        pipe = results[key]["pipeline"]
        inside = pipe.train_summary.get("seconds")
        if inside is not None:
            train_notes.append(
                f"{key}: train task {pipe.steps['train']:.1f} s = train step {inside:.1f} s (Trainer loop "
                f"{pipe.train_summary.get('train_loop_seconds') or 0:.1f} s) + {pipe.steps['train'] - inside:.1f} s "
                "storing its outputs in the step cache; everything but the train task took "
                f"{pipe.wall - pipe.steps['train']:.1f} s ({(pipe.wall - pipe.steps['train']) / inside:.0%} of the "
                "run's own train step, free of the two arms' run-to-run difference)"
            )
    prefect, again = costs["prefect"], costs["prefect_again"]
    subset_note = f" Data cut to at most {args.max_rows} rows (every k-th row)." if args.max_rows else ""
    epochs_note = f"train.epochs={args.epochs:g} in both arms" if args.epochs else "each config's epochs as is"
    home_note = (
        "a machine that ran tunepipe before: PREFECT_HOME's database and the MLflow store already created, no step "
        "cache, no champion"
        if args.home == "warm"
        else "a machine that never ran tunepipe: fresh PREFECT_HOME and MLflow store, created during the run"
    )
    return "\n".join(
        [
            "## Pipeline overhead: the same training with and without the pipeline (issue 7)",
            "",
            f'Raw = `run_step("train")` alone on already tokenized data in a fresh process (model load, Trainer '
            f"loop with per-epoch validation, saving the best model); pipeline = `tunepipe run` in a fresh process "
            f"({home_note}; git + DVC workspace; MLflow sqlite), same config and "
            f"seed, {epochs_note}.{subset_note} Overhead = (pipeline wall - raw train step) / raw train step.",
            "",
            *summary,
            "",
            "Where the time of `tunepipe run` goes (step times are the steps' own log lines; the share column is "
            "each part's share of the overhead; train is the trained work itself, and its difference to the raw "
            "arm is run-to-run noise):",
            "",
            *table,
            "",
            *(f"- {note}." for note in train_notes),
            "",
            *(
                f"- {key}: all runs (raw train step / tunepipe run, s): "
                f"{', '.join(f'{r:.1f}' for r in results[key]['all'][0])} / "
                f"{', '.join(f'{w:.1f}' for w in results[key]['all'][1])}; the fastest of each arm is shown."
                for key in keys
                if len(results[key]["all"][0]) > 1
            ),
            "",
            "Fixed costs, each in a fresh process:",
            "",
            "| what | seconds |",
            "|---|---|",
            f"| Python interpreter start (`python -c pass`) | {costs['interpreter']:.2f} |",
            f"| import the CLI and the flow (`flows.cli`, `flows.retrain`: prefect, typer, pydantic) | "
            f"{costs['cli']:.2f} |",
            f"| import the training stack (torch, transformers, `pipeline_lib.training`) | "
            f"{costs['training_stack']:.2f} |",
            f"| `import prefect` | {prefect['import']:.2f} |",
            f"| first one-task flow, fresh PREFECT_HOME (ephemeral API start + database creation + run) | "
            f"{prefect['first_flow']:.2f} |",
            f"| first one-task flow, next process, same PREFECT_HOME (ephemeral API start + run) | "
            f"{again['first_flow']:.2f} |",
            f"| second one-task flow in the same process (per-run orchestration) | {prefect['second_flow']:.2f} |",
            "",
            f"Prefect's ephemeral start-up: about {again['first_flow'] - again['second_flow']:.1f} s per process "
            f"(first flow minus second), plus {prefect['first_flow'] - again['first_flow']:.1f} s once per machine "
            "to create its database; a team Prefect server (`PREFECT_API_URL`) removes both.",
            "",
            f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f} {load_note()}.",
        ]
    )


def load_note() -> str:
    """Whether other jobs shared the machine: the benchmark's own threads load it up to its core count."""
    if os.getloadavg()[0] > len(os.sched_getaffinity(0)) + 0.5:
        return "(above the core count: other jobs shared the machine, the two arms' times are not comparable)"
    return "(the benchmark's own threads: no other job shared the machine)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=["tiny", "fpb"], default=["tiny", "fpb"])
    parser.add_argument("--epochs", type=float, default=None, help="train.epochs for both arms (default: config's)")
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
    parser.add_argument("--section", default="overhead", help="RESULTS.md section to write (a partial rerun: another)")
    parser.add_argument("--child", choices=["raw", "prefect", "store", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child = {
            "raw": lambda: raw_child(args.config, args.rest),
            "prefect": prefect_child,
            "store": store_child,
            "import": lambda: import_child(args.rest),
        }[args.child]
        print(json.dumps(child()), flush=True)
        return

    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()
    data = datasets(args.fpb_data)
    for key in args.datasets:
        if not data[key].source.is_file():
            parser.error(f"{key}: no data file {data[key].source} (--fpb-data FILE)")
    costs = fresh_process_costs()
    results = {
        key: measure(data[key], args.epochs, args.max_rows, args.repeats, args.home == "warm") for key in args.datasets
    }
    body = report(results, data, costs, args)
    write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
