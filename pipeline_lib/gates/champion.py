"""The champion a challenger is judged against, re-scored through its own ONNX graph on the challenger's test
rows, and the rows of that test split it may fairly be compared on: those it never saw in its own train or
validation split (their key digests are logged with every registered version). Also the serving latency of an
ONNX folder (batch 1, CPU)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.keys import text_digests
from pipeline_lib.registry import store
from pipeline_lib.runtime.predictor import OnnxPredictor

SEEN_KEYS_ARTIFACT = "data/seen_keys.parquet"  # key digests of a version's train and validation rows


@dataclass
class Champion:
    """The current champion's predictions re-scored on the challenger's test split (None: label sets differ)."""

    version: str
    run_id: str | None
    pred: np.ndarray | None
    seen: frozenset[str] | None = None  # key digests of its train and validation rows; None: never recorded
    split_method: str | None = None


@dataclass
class Comparison:
    """The test rows a challenger and the champion are compared on: the ones the champion never saw."""

    n_test: int
    overlap: int | None  # test rows in the champion's train or validation split; None: unknown
    rows: np.ndarray  # per test row: compared or not
    refused: str | None = None  # why no fair comparison is possible

    @property
    def n(self) -> int:
        return int(self.rows.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"n_test": self.n_test, "overlap": self.overlap, "n_compared": self.n, "refused": self.refused}

    def describe(self) -> str:
        if self.overlap == 0:
            return f"on all {self.n_test} test rows (none seen by the champion)"
        return f"on the {self.n} of {self.n_test} test rows the champion never saw ({self.overlap} left out)"


def comparison_rows(test: pd.DataFrame, champion: Champion, min_rows: int) -> Comparison:
    """Leave out the test rows the champion trained or selected on; refuse when too few are left, or when the
    champion's rows were never recorded (its overlap with this test split cannot be known)."""
    n_test = len(test)
    if champion.seen is None:
        why = (
            f"champion v{champion.version} has no record of the rows it was trained on (registered before tunepipe "
            "logged them), so its overlap with this test split is unknown and it is not compared; register it again "
            "on its data, or promote explicitly (`tunepipe promote NAME VERSION --force --reason ...`)"
        )
        return Comparison(n_test, None, np.zeros(n_test, dtype=bool), why)
    seen = np.array([digest in champion.seen for digest in text_digests(test["text"].astype(str))], dtype=bool)
    unseen, overlap = ~seen, int(seen.sum())
    refused = None
    if overlap and int(unseen.sum()) < min_rows:
        refused = (
            f"only {int(unseen.sum())} of {n_test} test rows are unseen by champion v{champion.version} ({overlap} "
            f"were in its train or validation split): fewer than gates.champion_min_rows={min_rows}, no fair comparison"
        )
    return Comparison(n_test, overlap, unseen, refused)


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
    seen_file = store.run_artifact(cfg, current.run_id, SEEN_KEYS_ARTIFACT) if current.run_id else None
    seen = frozenset(pd.read_parquet(seen_file)["key"]) if seen_file is not None else None
    return Champion(
        str(current.version),
        current.run_id,
        onnx_predictions(onnx_dir, texts, list(cfg.data.label_names)),
        seen=seen,
        split_method=(current.tags or {}).get("data.split_method"),
    )


def champion_opinion(cfg: PipelineConfig, texts: list[str], labels: list[str]) -> dict[str, Any] | None:
    """The champion's own view of rows added since its data (`data.label_issues`): for each text it never trained or
    selected on, its probabilities over `labels` (NaN rows for texts it saw, whose scores are not out of sample).
    None without a champion, without its record of seen rows, or with other labels."""
    from pipeline_lib.registry.fast_lookup import aliased, local_model

    found = aliased(cfg)
    if found is None or not found.run_id:
        return None
    seen_file = store.run_artifact(cfg, found.run_id, SEEN_KEYS_ARTIFACT)
    if seen_file is None:
        return None
    seen = frozenset(pd.read_parquet(seen_file)["key"])
    new = np.array([digest not in seen for digest in text_digests(texts)], dtype=bool)
    predictor = OnnxPredictor.from_dir(local_model(cfg, f"{cfg.registry.model_name}@{store.CHAMPION}").folder)
    if list(predictor.labels) != list(labels):
        return None
    probs = np.full((len(texts), len(labels)), np.nan)
    if new.any():
        logits = predictor.logits([t for t, is_new in zip(texts, new, strict=True) if is_new])
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        probs[new] = shifted / shifted.sum(1, keepdims=True)
    return {"version": found.version, "new": new, "probs": probs}
