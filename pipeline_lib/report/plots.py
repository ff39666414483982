"""The report's figures: the confusion matrix (a PNG file) and the training curves (an embedded PNG)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

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
    return _png(fig, dpi=90)


def drift_png(feature: dict[str, Any]) -> str | None:
    """One drift feature, champion's training split beside the new one, as a base64 PNG: shares side by side for
    a mix, overlaid histograms for lengths, bars for rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old, new = feature["champion"], feature["new"]
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    if "shares" in old:
        keys = sorted(set(old["shares"]) | set(new["shares"]))
        x = np.arange(len(keys))
        ax.bar(x - 0.2, [old["shares"].get(k, 0) for k in keys], 0.4, label="champion's training data")
        ax.bar(x + 0.2, [new["shares"].get(k, 0) for k in keys], 0.4, label="this run's")
        ax.set_xticks(x, keys, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("share")
    elif "values" in old:
        bins = np.histogram_bin_edges([*old["values"], *new["values"]] or [0], bins=30)
        ax.hist(old["values"], bins=bins, alpha=0.5, density=True, label="champion's training data")
        ax.hist(new["values"], bins=bins, alpha=0.5, density=True, label="this run's")
        ax.set_xlabel(feature["name"].replace("_", " "))
    else:
        ax.bar([0, 1], [old.get("unk_rate", 0), new.get("unk_rate", 0)], color=["C0", "C1"])
        ax.set_xticks([0, 1], ["champion's training data", "this run's"])
        ax.set_ylabel("[UNK] rate")
    ax.set_title(f"{feature['name']}: {feature['figure']:.3g} (max {feature['threshold']:g})", fontsize=9)
    if "shares" in old or "values" in old:
        ax.legend(fontsize=7)
    return _png(fig, dpi=80)


def _png(fig: Any, dpi: int) -> str:
    """A finished figure as a base64 PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
