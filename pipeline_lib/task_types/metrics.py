"""Classification metrics from labels or logits (scikit-learn underneath)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    `y_true`/`y_pred` hold label indices into `labels`.
    """
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "n": len(y_true),
    }


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics with per-class figures flattened as `f1.negative`, for logging and gate floors."""
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}
    for label, figures in metrics.get("per_class", {}).items():
        for name, value in figures.items():
            if name != "support":
                flat[f"{name}.{label}"] = float(value)
    return flat


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
