"""Serving runtimes side by side: the export step's own runtime table on Financial PhraseBank 50Agree.

    python bench/serving.py [--run-dir RUN] [--data FPB_FILE] [--sentences 64] [--set k=v ...]

Without `--run-dir`, trains the default model with configs/financial_phrasebank.yaml (validate → tokenize → train);
with it, reuses a run directory that holds `model/` and the `data/` splits (e.g. one left by bench/train_speed.py
--keep). Then runs the export step, which builds onnxruntime fp32 (graph-optimised), dynamic int8 and static int8
(QDQ, calibrated on training sentences), times each and PyTorch fp32/bf16 on real-length test sentences (median ms
at batch 1, samples/s at batch 32), scores each on the test split and picks the fastest within the metric budget.
Fraction of peak: 2·N·tokens per sample (N non-embedding parameters, tokens the mean non-pad length of the timed
sentences) over cores x GHz x 64 (fp32), 1024 (bf16) or 256 (int8) per cycle.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _results import FPB_50AGREE, REPO, machine, peak_flops, timed_steps, write_section

from pipeline_lib.config import load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import RunDir

PRECISION = {
    "onnxruntime-fp32": "fp32",
    "onnxruntime-int8-dynamic": "int8",
    "onnxruntime-int8-static": "int8",
    "pytorch-fp32": "fp32",
    "pytorch-bf16": "bf16",
}


def work_per_sample(run: RunDir, sentences: int) -> float:
    """Forward FLOPs of one timed sentence: 2 x non-embedding parameters x mean non-pad tokens."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    n = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    texts = pd.read_parquet(run.split_file("test"))["text"].astype(str).tolist()[:sentences]
    tokens = np.mean([len(ids) for ids in tokenizer(texts, truncation=True, max_length=64)["input_ids"]])
    return 2 * n * float(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FPB_50AGREE))
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, k=v")
    args = parser.parse_args()
    apply_quiet_env()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            REPO / "configs/financial_phrasebank.yaml",
            [
                f"data.path={args.data}",
                f"paths.store={tmp}/store",
                f"export.runtime_timing_sentences={args.sentences}",
                "export.benchmark=true",
                *args.overrides,
            ],
        )
        run = RunDir(Path(tmp) / "run")
        if args.run_dir:
            shutil.copytree(args.run_dir, run.root, ignore=shutil.ignore_patterns("onnx", "checkpoints"))
        else:
            timed_steps(cfg, run, ("validate", "tokenize", "train"))
        table = timed_steps(cfg, run, ("export",))[0]["export"]["runtime"]
        flop = work_per_sample(run, table["sentences"])

    cores = table["threads"]
    base = next(r for r in table["references"] if r["runtime"] == "pytorch-fp32")
    lines = [
        "| runtime | batch 1 p50 ms | batch 32 samples/s | vs PyTorch fp32 (b32) | test macro-F1 | Δ vs PyTorch "
        "| agreement | eligible | of peak (b32) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*table["references"], *table["candidates"]]
    for row in rows:
        metric = row.get("metric", table["metric_torch"] if row["runtime"] == "pytorch-fp32" else None)
        peak = peak_flops(PRECISION[row["runtime"]], cores)
        mark = " **chosen**" if row["runtime"] == table["chosen"] else ""
        lines.append(
            f"| {row['runtime']}{mark} | {row['p50_ms_batch1']:.2f} | {row['samples_per_s_batch32']:.0f} | "
            f"{row['samples_per_s_batch32'] / base['samples_per_s_batch32']:.2f}x | "
            + (f"{metric:.4f} | {metric - table['metric_torch']:+.4f} | " if metric is not None else "— | — | ")
            + f"{row.get('agreement', '—')} | {row.get('eligible', 'reference')} | "
            f"{row['samples_per_s_batch32'] * flop / peak:.1%} ({PRECISION[row['runtime']]}) |"
        )
    chosen = next(r for r in table["candidates"] if r["runtime"] == table["chosen"])
    speedup = chosen["samples_per_s_batch32"] / base["samples_per_s_batch32"]
    p50, loss = chosen["p50_ms_batch1"], table["metric_torch"] - chosen["metric"]
    throughput_met = speedup >= 8 and loss <= 0.005
    targets = (
        f"Targets (issue 16), chosen runtime: batch-1 p50 <= 1.2 ms: {p50:.2f} ms, "
        + ("met" if p50 <= 1.2 else f"NOT met (by {p50 - 1.2:.2f} ms)")
        + f"; batch 32 >= 8x PyTorch fp32 losing <= 0.5 pt of its macro-F1: {speedup:.2f}x, Δ macro-F1 {-100 * loss:+.2f} pt, "
        + ("met." if throughput_met else "NOT met.")
    )
    body = (
        "## Serving runtimes chosen by measurement (issues 9 and 16)\n\n"
        f"Export step's table for all-MiniLM-L6-v2 fine-tuned on Financial PhraseBank 50Agree (configs/"
        f"financial_phrasebank.yaml), {table['sentences']} real test sentences (mean {table['mean_words']} words), "
        f"{table['threads']} threads, metric budget {table['metric_budget']} of macro-F1 below PyTorch "
        f"({table['metric_torch']:.4f}); agreement = share of test labels equal to onnxruntime fp32's. "
        f"Chosen: **{table['chosen']}** (`{table['graph']}`).\n\n"
        + "\n".join(lines)
        + "".join(f"\n\nNot timed: {name}: {why}." for name, why in table.get("not_timed", {}).items())
        + f"\n\n{targets}\n\nMachine: {machine()}."
    )
    figure = (
        f"{table['chosen']}: {p50:.2f} ms p50 at batch 1, {speedup:.2f}x PyTorch fp32 at batch 32, "
        f"Δ macro-F1 {-100 * loss:+.2f} pt"
    )
    target = "≤ 1.2 ms; ≥ 8x losing ≤ 0.5 pt"
    write_section("serving", body, [("Serving runtime chosen by measurement (FPB 50Agree)", figure, target)])
    print(body)


if __name__ == "__main__":
    main()
