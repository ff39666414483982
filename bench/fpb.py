"""Financial PhraseBank 50Agree with the default model: test accuracy and macro-F1, wall time, machine.

    python bench/fpb.py [--data ../shared/data/financial_phrasebank/Sentences_50Agree.txt] [--set k=v ...]

Runs the library steps validate → tokenize → train → evaluate (no registry) with configs/financial_phrasebank.yaml
(stratified 80/10/10, seed 42) and writes the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse

from _results import FPB_50AGREE, REPO, machine, train_and_score, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FPB_50AGREE))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    config = REPO / "configs/financial_phrasebank.yaml"
    _, results, timings = train_and_score(config, [f"data.path={args.data}", *args.overrides])
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
