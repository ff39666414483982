"""The serving runtime, chosen by measurement on this machine: every candidate graph of the one ONNX export is
timed on real test sentences (batch 1 and 32) and scored on the test split; the fastest whose task metric stays
within the budget of PyTorch's is written into `tunepipe.json`, which `predict` and `serve` load."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.config import PipelineConfig
from pipeline_lib.hardware import cpu_bf16_flags, usable_cores
from pipeline_lib.runtime.predictor import META_FILE, OnnxPredictor

NO_BF16 = "no bf16 hardware on this CPU (AMX or AVX-512 BF16): bf16 would be emulated, several times slower than fp32"


def time_batches(predict: Callable[[list[str]], Any], texts: list[str], batch_size: int, rounds: int) -> list[float]:
    """Seconds per call of `predict` on consecutive batches of `texts` (after one warm-up call)."""
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)][:rounds] or [texts]
    predict(batches[0])
    timings = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - start)
    return timings


def speed(predict: Callable[[list[str]], Any], texts: list[str], rounds: int) -> dict[str, float]:
    """Median latency at batch 1 (ms) and throughput at batch 32 (samples/s) on real-length sentences."""
    single = time_batches(predict, texts, 1, rounds)
    pool = (texts * (64 // max(1, len(texts)) + 1))[:64]
    batched = time_batches(predict, pool, 32, 2)
    return {
        "p50_ms_batch1": round(statistics.median(single) * 1000, 3),
        "samples_per_s_batch32": round(len(pool) / sum(batched), 1),
    }


def torch_reference(model: Any, tokenizer: Any, max_length: int, bf16: bool) -> Callable[[list[str]], Any]:
    """PyTorch inference (fp32, or under CPU bf16 autocast) as a reference to beat."""
    import torch

    def predict(texts: list[str]) -> Any:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).logits

    return predict


def select(
    cfg: PipelineConfig,
    folder: Path,
    candidates: dict[str, tuple[str, float, float]],
    texts: list[str],
    metric_torch: float,
    model: Any,
    tokenizer: Any,
) -> dict[str, Any]:
    """Time and judge each candidate `{name: (graph file, task metric, label agreement with PyTorch)}`, record the
    fastest eligible one in the folder's tunepipe.json, and return the table. PyTorch bf16 is timed as a
    reference only where the CPU does bf16 in hardware."""
    import torch

    threads = cfg.train.num_threads or usable_cores()
    torch.set_num_threads(threads)
    texts = texts[: cfg.export.runtime_timing_sentences]
    rounds = len(texts)
    budget = cfg.export.runtime_metric_budget
    rows = []
    for name, (graph, metric, agreement) in candidates.items():
        predictor = OnnxPredictor.from_dir(folder, num_threads=threads, cpu_only=True, graph=graph)
        eligible = metric >= metric_torch - budget and agreement >= cfg.export.runtime_min_agreement
        rows.append(
            {
                "runtime": name,
                "graph": graph,
                "metric": round(metric, 6),
                "agreement": round(agreement, 6),
                "eligible": eligible,
                **speed(predictor.logits, texts, rounds),
            }
        )
    model.eval()
    precisions = {"pytorch-fp32": False, "pytorch-bf16": True}
    not_timed = {} if cpu_bf16_flags() else {"pytorch-bf16": NO_BF16}
    references = [
        {"runtime": name, **speed(torch_reference(model, tokenizer, cfg.model.max_length, bf16), texts, rounds)}
        for name, bf16 in precisions.items()
        if name not in not_timed
    ]
    eligible = [row for row in rows if row["eligible"]] or rows[:1]
    chosen = min(eligible, key=lambda row: (row["p50_ms_batch1"], -row["samples_per_s_batch32"]))
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta.update(graph=chosen["graph"], runtime=chosen["runtime"])
    meta_file.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return {
        "chosen": chosen["runtime"],
        "graph": chosen["graph"],
        "metric_torch": round(metric_torch, 6),
        "metric_budget": budget,
        "threads": threads,
        "sentences": len(texts),
        "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1) if texts else 0.0,
        "candidates": rows,
        "references": references,
        "not_timed": not_timed,
    }
