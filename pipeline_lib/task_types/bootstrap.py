"""Paired bootstrap of a metric difference between two models scored on the same test rows (numpy only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def fast_metric(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, name: str, labels: list[str]) -> float:
    """`accuracy`, `macro_f1`, or a per-class `precision.X`/`recall.X`/`f1.X`, from one confusion matrix
    (the same figures as `metrics.classification_metrics`, without scikit-learn's per-call overhead)."""
    if name == "accuracy":
        return float((y_true == y_pred).mean()) if len(y_true) else 0.0
    cm = np.bincount(y_true * n_labels + y_pred, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if name == "macro_f1":
        return float(f1.mean())
    kind, _, label = name.partition(".")
    per_class = {"precision": precision, "recall": recall, "f1": f1}
    if kind not in per_class or label not in labels:
        raise ValueError(f"metric {name!r}: expected accuracy, macro_f1 or precision|recall|f1.<label> of {labels}")
    return float(per_class[kind][labels.index(label)])


@dataclass
class PairedBootstrap:
    """challenger − champion on one metric, with a percentile confidence interval over resampled rows."""

    metric: str
    challenger: float
    champion: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_not_better: float  # share of resamples where the challenger does not beat the champion
    resamples: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    y_true: np.ndarray,
    pred_challenger: np.ndarray,
    pred_champion: np.ndarray,
    labels: list[str],
    metric: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """Resample test rows with replacement (the same rows for both models) and score the difference."""
    y_true, a, b = (np.asarray(x, dtype=np.int64) for x in (y_true, pred_challenger, pred_champion))
    if not (len(y_true) == len(a) == len(b)) or len(y_true) == 0:
        raise ValueError(f"paired bootstrap needs equal, non-empty arrays; got {len(y_true)}, {len(a)}, {len(b)}")
    k = len(labels)
    return resample_delta(
        len(y_true),
        lambda idx: fast_metric(y_true[idx], a[idx], k, metric, labels),
        lambda idx: fast_metric(y_true[idx], b[idx], k, metric, labels),
        metric,
        resamples,
        confidence,
        seed,
    )


def resample_delta(
    n: int,
    score_challenger: Callable[[np.ndarray], float],
    score_champion: Callable[[np.ndarray], float],
    metric: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedBootstrap:
    """The paired bootstrap itself: score both models on the same resampled units (rows or sentences)."""
    everything = np.arange(n)
    score_a, score_b = score_challenger(everything), score_champion(everything)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        deltas[i] = score_challenger(idx) - score_champion(idx)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return PairedBootstrap(
        metric=metric,
        challenger=score_a,
        champion=score_b,
        delta=score_a - score_b,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_not_better=float((deltas <= 0).mean()),
        resamples=resamples,
        n=n,
    )


def metric_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: list[str],
    metric: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval for one model's metric (for reports)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, len(y_true), len(y_true))
        scores[i] = fast_metric(y_true[idx], y_pred[idx], len(labels), metric, labels)
    tail = (1 - confidence) / 2
    low, high = np.quantile(scores, [tail, 1 - tail])
    return float(low), float(high)
