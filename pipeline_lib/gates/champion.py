"""The champion a challenger is judged against, re-scored through its own ONNX graph on the challenger's test
rows; and the serving latency of an ONNX folder (batch 1, CPU)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry import store
from pipeline_lib.runtime.predictor import OnnxPredictor


@dataclass
class Champion:
    """The current champion's predictions re-scored on the challenger's test split (None: label sets differ)."""

    version: str
    run_id: str | None
    pred: np.ndarray | None


def onnx_predictions(onnx_dir: Path, texts: list[str], labels: list[str]) -> np.ndarray | None:
    """Label indices from an exported ONNX folder; None when its label set differs from `labels`."""
    predictor = OnnxPredictor.from_dir(onnx_dir)
    if list(predictor.labels) != list(labels):
        return None
    return np.argmax(predictor.logits(texts), axis=-1)


def measure_latency(onnx_dir: Path, texts: list[str], threads: int, samples: int) -> dict[str, float]:
    """p50/p95 milliseconds of tokenize + run for one text at a time, CPU provider, `threads` intra-op threads."""
    predictor = OnnxPredictor.from_dir(onnx_dir, num_threads=threads, cpu_only=True)
    chosen = [texts[i % len(texts)] for i in range(samples)]
    for text in chosen[:3]:  # warm-up
        predictor.logits([text])
    times = []
    for text in chosen:
        start = time.perf_counter()
        predictor.logits([text])
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "n": len(times), "threads": threads}


def current_champion(cfg: PipelineConfig, client: Any, texts: list[str], name: str | None = None) -> Champion | None:
    """The champion of `name` (default: the configured model) re-scored on `texts` via its ONNX graph."""
    name = name or cfg.registry.model_name
    current = store.alias_version(client, name, store.CHAMPION)
    if current is None:
        return None
    onnx_dir = store.onnx_dir_for(cfg, client, name, str(current.version))
    return Champion(str(current.version), current.run_id, onnx_predictions(onnx_dir, texts, list(cfg.data.labels)))
