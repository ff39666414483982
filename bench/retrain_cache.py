"""What knowing the data saves: wall time of the retrain flow cold, skipped (data and config unchanged),
forced with every step served from the content-hash cache, and after a gates-only config change.

    python bench/retrain_cache.py [--epochs 1]

Runs in a throw-away workspace (the packaged 360-row dataset, a private MLflow sqlite store, Prefect's
ephemeral API) and writes the `retrain_cache` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _results import machine, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()

    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()  # before Prefect reads its settings: a patient ephemeral-server start on a busy machine
    from flows.retrain import retrain
    from pipeline_lib.data.versions import SEED_DATASET

    root = Path(tempfile.mkdtemp(prefix="bench-retrain-cache-"))
    (root / "data").mkdir()
    shutil.copy(SEED_DATASET, root / "data" / "sample.csv")
    os.chdir(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    base = ["data.path=data/sample.csv", f"train.epochs={args.epochs}", "gates.floors={}"]

    rows, seconds_of = [], []
    for label, extra, force in [
        ("cold: nothing cached, no champion", [], False),
        ("unchanged data and config: skipped", [], False),
        ("--force: validate…export served from cache", [], True),
        ("gates-only change: export re-runs, train cached", ["gates.min_improvement=0.2"], False),
    ]:
        start = time.perf_counter()
        outcome = retrain(None, [*base, *extra], force=force)
        seconds = time.perf_counter() - start
        seconds_of.append(seconds)
        what = "skipped" if outcome["skipped"] else f"v{outcome['registered']['version']}"
        rows.append(f"| {label} | {seconds:.1f} | {what} |")
        print(rows[-1], flush=True)
    shutil.rmtree(root, ignore_errors=True)

    body = "\n".join(
        [
            "## Retraining that knows the data: skip and step cache (issue 4)",
            "",
            f"Retrain flow in-process (Prefect ephemeral API, MLflow sqlite), packaged 360-row dataset, "
            f"all-MiniLM-L6-v2, {args.epochs:g} epoch(s). Wall seconds per flow run, including Prefect's per-run "
            "overhead; the machine was shared with other test runs, so treat figures as rough.",
            "",
            "| run | seconds | result |",
            "|---|---|---|",
            *rows,
            "",
            f"Machine: {machine()}.",
        ]
    )
    cold, skipped, forced, gates_only = seconds_of
    figure = f"skip {skipped:.1f} s, --force from cache {forced:.1f} s, gates-only change {gates_only:.1f} s; cold {cold:.1f} s"
    write_section("retrain_cache", body, [("Retraining that knows the data: skip and step cache", figure, "—")])


if __name__ == "__main__":
    main()
