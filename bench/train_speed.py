"""Training speed side by side: the reference plain PyTorch loop vs tunepipe's train step, same split, same machine.

    python bench/train_speed.py [--data FPB_FILE] [--seeds 42 43 44] [--epochs 5] [--keep RUN_DIR]

The reference recipe (as in the BERT fine-tuning write-ups this project grew from): AdamW lr 2e-5, batch 16, fp32,
padding to the batch's longest, max length 64, N epochs, best epoch on validation macro-F1. tunepipe: its train step
with configs/financial_phrasebank.yaml (precision auto, length-grouped batches, dynamic padding). Both on Financial
PhraseBank 50Agree, stratified 80/10/10 with seed 42. Throughput counts every training sample of every epoch over the
training wall time including the per-epoch validation passes, for both. MFU-style figures use 6·N·tokens with N the
non-embedding parameters and tokens the non-pad training tokens, over the machine's peak (fp32: cores x GHz x 64
FLOP/cycle; bf16: cores x GHz x 1024 FLOP/cycle as the issue defines it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _results import FPB_50AGREE, REPO, cpu_ghz, machine, peak_flops, write_section

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.hardware import usable_cores
from pipeline_lib.layout import RunDir
from pipeline_lib.steps import run_step
from pipeline_lib.task_types.metrics import classification_metrics


def non_embedding_params(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def reference_loop(cfg: PipelineConfig, run: RunDir, seed: int, epochs: int) -> dict:
    """The plain loop: fp32, AdamW 2e-5, batch 16, pad to the batch's longest, max length 64."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline_lib.training.modeling import resolve_model_source

    torch.manual_seed(seed)
    torch.set_num_threads(usable_cores())
    source = resolve_model_source(cfg.model.name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    labels = cfg.data.labels
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels), use_safetensors=True)
    frames = {s: pd.read_parquet(run.split_file(s)) for s in ("train", "validation", "test")}
    y = {s: np.array([labels.index(v) for v in f["label"]]) for s, f in frames.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    rng = np.random.default_rng(seed)

    def batches(split: str, shuffle: bool):
        order = rng.permutation(len(frames[split])) if shuffle else np.arange(len(frames[split]))
        texts = frames[split]["text"].tolist()
        for i in range(0, len(order), 16):
            idx = order[i : i + 16]
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=64, return_tensors="pt")
            yield enc, torch.tensor(y[split][idx])

    def predict(split: str) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            out = [model(**enc).logits.argmax(-1).numpy() for enc, _ in batches(split, False)]
        model.train()
        return np.concatenate(out)

    best, best_state, tokens, start = -1.0, None, 0, time.perf_counter()
    for _ in range(epochs):
        for enc, target in batches("train", True):
            loss = model(**enc, labels=target).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            tokens += int(enc["attention_mask"].sum())
        f1 = classification_metrics(y["validation"], predict("validation"), labels)["macro_f1"]
        if f1 > best:
            best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    test = classification_metrics(y["test"], predict("test"), labels)
    return {
        "samples": epochs * len(frames["train"]),
        "tokens": tokens,
        "seconds": train_seconds,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "precision": "fp32",
        "n_params": non_embedding_params(model),
    }


def tunepipe_training(cfg: PipelineConfig, run: RunDir, seed: int, epochs: int) -> dict:
    """tunepipe's own train + evaluate steps on the same validated split."""
    from datasets import load_from_disk

    cfg = PipelineConfig.model_validate(
        {**cfg.model_dump(), "train": {**cfg.train.model_dump(), "seed": seed, "epochs": epochs}}
    )
    run_step("tokenize", cfg, run)
    start = time.perf_counter()
    trained = run_step("train", cfg, run).to_dict()
    seconds = time.perf_counter() - start
    metrics = run_step("evaluate", cfg, run).to_dict()["metrics"]
    train_set = load_from_disk(str(run.tokenized))["train"]
    epochs_run = trained["epochs_run"]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    return {
        "samples": epochs_run * len(train_set),
        "tokens": int(epochs_run * sum(train_set["length"])),
        "seconds": seconds,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "precision": trained["precision"],
        "n_params": non_embedding_params(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FPB_50AGREE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--section", default="train_speed", help="RESULTS.md section to write")
    parser.add_argument("--keep", type=Path, help="copy the last tunepipe run directory here (for bench/serving.py)")
    args = parser.parse_args()
    apply_quiet_env()

    rows = {"reference loop (fp32)": [], "tunepipe train step": []}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            REPO / "configs/financial_phrasebank.yaml",
            [f"data.path={args.data}", f"paths.store={tmp}/store", "train.early_stopping_patience=0"],
        )
        run = RunDir(Path(tmp) / "run")
        run_step("validate", cfg, run)
        for seed in args.seeds:
            rows["reference loop (fp32)"].append(reference_loop(cfg, run, seed, args.epochs))
            rows["tunepipe train step"].append(tunepipe_training(cfg, run, seed, args.epochs))
        if args.keep:
            shutil.copytree(run.root, args.keep, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)

    cores, ghz = usable_cores(), cpu_ghz()
    peak = {precision: peak_flops(precision, cores) for precision in ("fp32", "bf16")}
    lines = [
        "| training | precision | samples/s | non-pad tokens/s | vs reference | wall s (mean) | "
        "test accuracy | test macro-F1 | FLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base, speeds, scores = None, {}, {}
    for name, results in rows.items():
        sps = statistics.mean(r["samples"] / r["seconds"] for r in results)
        tps = statistics.mean(r["tokens"] / r["seconds"] for r in results)
        flops = 6 * results[0]["n_params"] * tps
        base = base or sps
        precision = results[0]["precision"]
        speeds[name], scores[name] = sps, statistics.mean(r["macro_f1"] for r in results)
        lines.append(
            f"| {name} | {precision} | {sps:.1f} | {tps:.0f} | {sps / base:.2f}x | "
            f"{statistics.mean(r['seconds'] for r in results):.0f} | "
            f"{statistics.mean(r['accuracy'] for r in results):.4f} | "
            f"{statistics.mean(r['macro_f1'] for r in results):.4f} | {flops / 1e9:.1f} G | "
            f"{flops / peak.get(precision, peak['fp32']):.1%} |"
        )
    body = (
        f"## Training speed: reference loop vs tunepipe (issue 9)\n\nFinancial PhraseBank 50Agree, seeds {args.seeds}, "
        f"{args.epochs} epochs, all-MiniLM-L6-v2. Peak used: {cores} cores x {ghz:.2f} GHz x 64 (fp32) / 1024 (bf16) "
        f"FLOP/cycle.\n\n" + "\n".join(lines) + f"\n\nMachine: {machine()}."
    )
    ref, ours = "reference loop (fp32)", "tunepipe train step"
    figure = (
        f"{speeds[ours] / speeds[ref]:.2f}x the reference loop's samples/s; test macro-F1 {scores[ours]:.4f} vs "
        f"{scores[ref]:.4f} (seeds {', '.join(map(str, args.seeds))})"
    )
    target = "faster, macro-F1 within 0.5 pt"
    write_section(args.section, body, [("Training speed: tunepipe vs a reference loop", figure, target)])
    print(body)


if __name__ == "__main__":
    main()
