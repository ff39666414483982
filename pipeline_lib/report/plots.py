"""The report's figures: the confusion matrix (a PNG file) and the training curves (an embedded PNG)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    """A labelled confusion-matrix heat map (rows: true label, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array(matrix)
    size = max(4.0, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = values.max() / 2 if values.size else 0
    for (i, j), count in np.ndenumerate(values):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves_png(history: list[dict[str, float]]) -> str | None:
    """Train/validation loss and validation metrics per epoch, as a base64 PNG (None without history)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, ax in (("train_loss", loss_ax), ("val_loss", loss_ax), ("val_accuracy", metric_ax)):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=key)
    for key in sorted({k for row in history for k in row if k.startswith("val_") and k.endswith("f1")}):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        metric_ax.plot(*zip(*points, strict=True), marker="o", label=key)
    for ax, title in ((loss_ax, "loss"), (metric_ax, "validation metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
