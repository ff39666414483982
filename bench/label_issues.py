"""Labels worth trusting (issue 28): does the label check find planted mislabels, and does `drop` help?

    python bench/label_issues.py [--flip 0.05] [--seeds 42 43 44] [--epochs 3] [--embed-rows 30000]
                                 [--parts detect allagree fpb50 cost]

- detect: Financial PhraseBank AllAgree (nearly clean), split by the pipeline (configs/financial_phrasebank.yaml's
  hash split, seed 42); `--flip` of the training rows get another label at random (seeded). The check
  (`pipeline_lib.data.label_issues.find_label_issues`, as the validate step runs it, on every split) is scored
  against the flipped rows: precision and recall of the flagged training rows; its wall time (embeddings cold).
- allagree: the flipped data trained and tested with `data.label_issues=warn` (every row kept) and `drop`; the test
  split is the same untouched rows in both (explicit split column).
- fpb50: Financial PhraseBank 50Agree as shipped, `warn` vs `drop`, over `--seeds` (train.seed): rows flagged and
  dropped, test macro-F1 mean and spread; the check's wall time beside the train step's.
- cost: the check on `--embed-rows` texts (FPB sentences and variations, as bench/overhead.py builds them), cold,
  beside one training epoch on as many rows at the train step's samples/s measured in this run (fpb50 or allagree).

Library steps validate → tokenize → train → evaluate in throw-away stores (`_results.train_and_score`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _results import FPB_50AGREE, REPO, SHARED_DATA, machine, train_and_score, write_section

FPB_ALL = SHARED_DATA / "financial_phrasebank" / "Sentences_AllAgree.txt"
CONFIG = REPO / "configs" / "financial_phrasebank.yaml"


def pipeline_splits(data: Path, work: Path) -> pd.DataFrame:
    """The pipeline's own splits of `data` (validate with the check off): text, label, split, row."""
    from pipeline_lib.config import load_config
    from pipeline_lib.layout import RunDir
    from pipeline_lib.steps import run_step

    cfg = load_config(CONFIG, [f"data.path={data}", "data.label_issues=off", f"paths.store={work}/store"])
    run = RunDir(work / "split-run")
    run_step("validate", cfg, run)
    parts = [pd.read_parquet(run.split_file(s)).assign(split=s) for s in ("train", "validation", "test")]
    return pd.concat(parts, ignore_index=True)[["text", "label", "split", "row"]]


def flip(frame: pd.DataFrame, share: float, seed: int, labels: list[str]) -> tuple[pd.DataFrame, set[str]]:
    """`share` of the training rows relabelled to another label at random (seeded); the flipped texts."""
    rng = np.random.default_rng(seed)
    train = frame.index[frame["split"] == "train"].to_numpy()
    chosen = rng.choice(train, size=round(share * len(train)), replace=False)
    flipped = frame.copy()
    for i in chosen:
        others = [label for label in labels if label != frame.at[i, "label"]]
        flipped.at[i, "label"] = others[rng.integers(len(others))]
    return flipped, set(frame.loc[chosen, "text"])


def detect(frame: pd.DataFrame, flipped_texts: set[str], labels: list[str], work: Path) -> dict:
    from pipeline_lib.data.label_issues import find_label_issues
    from pipeline_lib.training.modeling import resolve_model_source

    start = time.perf_counter()
    check = find_label_issues(frame, labels, resolve_model_source("default"), work / "cache-detect", seed=42)
    seconds = time.perf_counter() - start
    issues = check.issues
    flagged_train = set(issues.loc[issues["split"] == "train", "text"])
    hits = len(flagged_train & flipped_texts)
    return {
        "rows": len(frame),
        "flipped": len(flipped_texts),
        "flagged": len(issues),
        "flagged_train": len(flagged_train),
        "precision": hits / max(1, len(flagged_train)),
        "recall": hits / max(1, len(flipped_texts)),
        "seconds": seconds,
        "embed_seconds": check.embed_seconds,
        "fit_seconds": check.fit_seconds,
    }


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame[["text", "label", "split"]].to_csv(path, index=False)
    return path


def train(data: Path, setting: str, seed: int, epochs: float, work: Path, fmt: str) -> dict:
    sets = [
        f"data.path={data}",
        f"data.format={fmt}",
        f"data.label_issues={setting}",
        f"train.seed={seed}",
        f"train.epochs={epochs:g}",
        f'paths.read_roots=[".", "{SHARED_DATA}", "{work}"]',
    ]
    _, results, seconds = train_and_score(CONFIG, sets)
    check = results["validate"].get("label_issues") or {}
    summary = results["train"]
    return {
        "setting": setting,
        "seed": seed,
        "rows": results["validate"]["rows"],
        "flagged": check.get("flagged"),
        "dropped": check.get("dropped"),
        "check_seconds": (check.get("embed_seconds") or 0) + (check.get("fit_seconds") or 0),
        "train_seconds": seconds["train"],
        "samples_per_s": summary.get("train_samples_per_second"),
        "macro_f1": results["evaluate"]["metrics"]["macro_f1"],
        "accuracy": results["evaluate"]["metrics"]["accuracy"],
    }


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return (
        f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (min {min(values):.4f}, max {max(values):.4f})"
    )


def cost(rows: int, samples_per_s: float | None, work: Path) -> dict:
    """The check cold on `rows` texts built like bench/overhead.py's fpb30k, beside one epoch's estimate."""
    sys.path.insert(0, str(Path(__file__).parent))
    from overhead import write_variations

    from pipeline_lib.data.label_issues import find_label_issues
    from pipeline_lib.training.modeling import resolve_model_source

    source = work / "variations.txt"
    write_variations(FPB_50AGREE, source, rows)
    lines = source.read_text(encoding="latin-1").splitlines()
    texts, labels = zip(*(line.rsplit("@", 1) for line in lines if "@" in line), strict=True)
    frame = pd.DataFrame({"text": texts, "label": labels, "split": "train", "row": range(len(texts))})
    start = time.perf_counter()
    check = find_label_issues(frame, ["negative", "neutral", "positive"], resolve_model_source("default"), work / "c")
    seconds = time.perf_counter() - start
    epoch = rows / samples_per_s if samples_per_s else None
    return {
        "rows": len(frame),
        "seconds": seconds,
        "embed": check.embed_seconds,
        "fit": check.fit_seconds,
        "epoch": epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--embed-rows", type=int, default=30_000)
    parser.add_argument("--parts", nargs="+", default=["detect", "allagree", "fpb50", "cost"])
    parser.add_argument("--section", default="label_issues")
    args = parser.parse_args()

    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()
    labels = ["negative", "neutral", "positive"]
    work = Path(tempfile.mkdtemp(prefix="bench-label-issues-"))
    body = [
        "## Labels worth trusting: likely mislabelled rows found before training (issue 28)",
        "",
        "Check: sentence embeddings of the default encoder (all-MiniLM-L6-v2, mean pooling, cold cache), a logistic "
        "regression in 5 seeded stratified folds for out-of-sample probabilities, `cleanlab.filter.find_label_issues` "
        f"ranked by self-confidence, on every split. Training: configs/financial_phrasebank.yaml, {args.epochs:g} "
        "epochs, library steps validate → tokenize → train → evaluate. The test split is never changed by `drop`.",
        "",
    ]
    summary = []
    samples_per_s = None
    clean = pipeline_splits(FPB_ALL, work)
    flipped, flipped_texts = flip(clean, args.flip, 7, labels)
    if "detect" in args.parts:
        found = detect(flipped, flipped_texts, labels, work)
        body += [
            f"### Planted mislabels: FPB AllAgree, {args.flip:.0%} of training labels flipped (seed 7)",
            "",
            "| rows checked | flipped (train) | flagged (all splits) | flagged in train | precision (train) | "
            "recall | target | check wall s (embed + fit) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {found['rows']} | {found['flipped']} | {found['flagged']} | {found['flagged_train']} | "
            f"{found['precision']:.3f} | {found['recall']:.3f} | both ≥ 0.6: "
            f"{'met' if min(found['precision'], found['recall']) >= 0.6 else 'NOT met'} | {found['seconds']:.1f} "
            f"({found['embed_seconds']:.1f} + {found['fit_seconds']:.1f}) |",
            "",
        ]
        summary.append(
            (
                "Label check: planted 5 % flips on FPB AllAgree",
                f"precision {found['precision']:.3f}, recall {found['recall']:.3f}",
                "both ≥ 0.6",
            )
        )
    if "allagree" in args.parts:
        data = write_csv(flipped, work / "allagree_flipped.csv")
        runs = [train(data, setting, 42, args.epochs, work, "csv") for setting in ("warn", "drop")]
        samples_per_s = runs[0]["samples_per_s"]
        body += [
            "### Training on the flipped AllAgree data: warn (all rows kept) vs drop (same untouched test split)",
            "",
            "| setting | rows train/val/test | flagged | dropped | test macro-F1 | test accuracy | check s | train s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        body += [
            f"| {r['setting']} | {r['rows']['train']}/{r['rows']['validation']}/{r['rows']['test']} | {r['flagged']} | "
            f"{r['dropped']} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {r['check_seconds']:.1f} | "
            f"{r['train_seconds']:.0f} |"
            for r in runs
        ]
        body.append("")
        summary.append(
            (
                "Label check: flipped AllAgree, test macro-F1 warn vs drop",
                f"{runs[0]['macro_f1']:.4f} vs {runs[1]['macro_f1']:.4f}",
                "—",
            )
        )
    if "fpb50" in args.parts:
        runs = [
            train(FPB_50AGREE, setting, seed, args.epochs, work, "phrasebank")
            for seed in args.seeds
            for setting in ("warn", "drop")
        ]
        samples_per_s = runs[0]["samples_per_s"]
        body += [
            f"### FPB 50Agree as shipped: warn vs drop over seeds {', '.join(map(str, args.seeds))}",
            "",
            "| setting | seed | rows train/val/test | flagged | dropped | test macro-F1 | accuracy | check s | train s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        body += [
            f"| {r['setting']} | {r['seed']} | {r['rows']['train']}/{r['rows']['validation']}/{r['rows']['test']} | "
            f"{r['flagged']} | {r['dropped']} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | "
            f"{r['check_seconds']:.1f} | {r['train_seconds']:.0f} |"
            for r in runs
        ]
        by = {s: [r["macro_f1"] for r in runs if r["setting"] == s] for s in ("warn", "drop")}
        body += ["", f"Test macro-F1, warn: {mean_spread(by['warn'])}; drop: {mean_spread(by['drop'])}.", ""]
        summary.append(
            (
                "Label check: FPB 50Agree test macro-F1, warn vs drop",
                f"warn {statistics.mean(by['warn']):.4f}, drop {statistics.mean(by['drop']):.4f} "
                f"({len(args.seeds)} seeds; {runs[0]['flagged']} rows flagged)",
                "—",
            )
        )
    if "cost" in args.parts:
        c = cost(args.embed_rows, samples_per_s, work)
        share = f"{c['seconds'] / c['epoch']:.1%}" if c["epoch"] else "n/a"
        verdict = "met" if c["epoch"] and c["seconds"] <= 0.1 * c["epoch"] else "NOT met"
        body += [
            f"### Cost on {c['rows']} texts (cold: nothing cached)",
            "",
            "| texts | check s (embed + fit) | one training epoch on as many rows, s (train samples/s of this run) | "
            "share | target |",
            "|---|---|---|---|---|",
            f"| {c['rows']} | {c['seconds']:.1f} ({c['embed']:.1f} + {c['fit']:.1f}) | "
            f"{c['epoch']:.0f} ({samples_per_s:.1f}/s) | {share} | ≤ 10 %: {verdict} |"
            if c["epoch"]
            else f"| {c['rows']} | {c['seconds']:.1f} | (no training in this run) | n/a | ≤ 10 % |",
            "",
        ]
        summary.append(("Label check cost on 30k texts, share of one epoch", share, "≤ 10 %"))
    body += [f"Machine: {machine()}."]
    write_section(args.section, "\n".join(body), summary)
    print("\n".join(body))


if __name__ == "__main__":
    main()
