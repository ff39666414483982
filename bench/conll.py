"""CoNLL-2003 English NER with the default model: test (eng.testb) entity F1, wall time, machine.

    python bench/conll.py [--data ../shared/data/conll2003] [--set k=v ...] [--section conll]

Runs the library steps validate → tokenize → train → evaluate (no registry) with configs/conll2003.yaml: train
on eng.train, select the best epoch on eng.testa, score eng.testb with seqeval (entity level, micro), and writes
the figures to bench/RESULTS.md. A reduced CPU run: --set data.max_train_sentences=3000 --set train.epochs=1.
"""

from __future__ import annotations

import argparse

from _results import REPO, SHARED_DATA, machine, train_and_score, write_section

FULL_TRAIN_SENTENCES = 14041


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA / "conll2003"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--section", default="conll", help="RESULTS.md section name (one per kind of run)")
    args = parser.parse_args()

    cfg, results, timings = train_and_score(
        REPO / "configs/conll2003.yaml", [f"data.path={args.data}", *args.overrides]
    )
    wall = sum(timings.values())

    train, metrics, rows = results["train"], results["evaluate"]["metrics"], results["validate"]["rows"]
    epochs = max(float(train["epochs_run"]), 1e-9)
    per_epoch = timings["train"] / epochs
    full = per_epoch * FULL_TRAIN_SENTENCES / rows["train"] * cfg.train.epochs
    per_type = ", ".join(f"{k.split('.', 1)[1]} {v:.3f}" for k, v in sorted(metrics.items()) if k.startswith("f1."))
    header = (
        "| train sentences (val/test) | model | max_length/stride | precision | epochs run (best) "
        "| testa entity F1 (best) | testb entity F1 | P / R | token acc. | train time | wall time |"
    )
    row = (
        f"| {rows['train']} ({rows['validation']}/{rows['test']}) | all-MiniLM-L6-v2 (22.7M, uncased) "
        f"| {cfg.model.max_length}/{cfg.model.stride} | {train['precision']} "
        f"| {train['epochs_run']} ({train['best_epoch']}) | {train['best_metric']:.4f} "
        f"| **{metrics['entity_f1']:.4f}** | {metrics['entity_precision']:.4f} / {metrics['entity_recall']:.4f} "
        f"| {metrics['token_accuracy']:.4f} | {timings['train']:.0f} s | {wall:.0f} s |"
    )
    body = f"""## CoNLL-2003 English NER on a reduced training set, default model (issue 3): `{args.section}`

{header}
|{"---|" * 11}
{row}

Per type F1 on eng.testb: {per_type}. Token accuracy counts `O` and is shown only as a secondary figure.
Train throughput {train["train_samples_per_second"]:.1f} windows/s (with per-epoch validation on all of eng.testa).
Projected full run ({FULL_TRAIN_SENTENCES} sentences x {cfg.train.epochs:g} epochs, same machine): about
{full / 60:.0f} min of training (this run: {per_epoch:.0f} s per epoch over {rows["train"]} sentences, validation
included). Step times: {", ".join(f"{k} {v:.0f} s" for k, v in timings.items())}.
Machine: {machine()}."""
    question = f"CoNLL-2003 NER on {rows['train']} training sentences, {train['epochs_run']} epochs"
    write_section(args.section, body, [(question, f"eng.testb entity F1 {metrics['entity_f1']:.4f}", "—")])
    print(body)


if __name__ == "__main__":
    main()
