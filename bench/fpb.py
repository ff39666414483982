"""Financial PhraseBank 50Agree with the default model: test accuracy and macro-F1, wall time, machine.

    python bench/fpb.py [--data ../shared/data/financial_phrasebank/Sentences_50Agree.txt] [--set k=v ...]

Runs the library steps validate → tokenize → train → evaluate (no registry) with configs/financial_phrasebank.yaml
(stratified 80/10/10, seed 42) and writes the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _results import machine, timed_steps, write_section

from pipeline_lib.config import load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import RunDir

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/financial_phrasebank/Sentences_50Agree.txt"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    apply_quiet_env()

    cfg = load_config(REPO / "configs/financial_phrasebank.yaml", [f"data.path={args.data}", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"store": f"{tmp}/store"})})
        run = RunDir(Path(tmp) / "run")
        results, timings = timed_steps(cfg, run, ("validate", "tokenize", "train", "evaluate"))
        wall = sum(timings.values())

    train, metrics, rows = results["train"], results["evaluate"]["metrics"], results["validate"]["rows"]
    body = f"""## Financial PhraseBank 50Agree, default model (issue 2)

| data | split (train/val/test) | model | precision | epochs run (best) | test accuracy | test macro-F1 | train time | wall time |
|---|---|---|---|---|---|---|---|---|
| 50Agree, dedup ({results["validate"]["dropped_duplicates"]} rows dropped) | {rows["train"]}/{rows["validation"]}/{rows["test"]} | all-MiniLM-L6-v2 (22.7M) | {train["precision"]} | {train["epochs_run"]} ({train["best_epoch"]}) | {metrics["accuracy"]:.4f} | {metrics["macro_f1"]:.4f} | {timings["train"]:.0f} s | {wall:.0f} s |

Per class F1: {", ".join(f"{k.split('.', 1)[1]} {v:.3f}" for k, v in metrics.items() if k.startswith("f1."))}.
Train throughput {train["train_samples_per_second"]:.1f} samples/s (includes per-epoch validation and checkpointing).
Machine: {machine()}."""
    write_section("fpb", body)
    print(body)


if __name__ == "__main__":
    main()
