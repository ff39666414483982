"""Step 4, evaluate: score the fine-tuned model on the held-out test split."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.metrics import flat_metrics
from pipeline_lib.task_types import task_for


@dataclass
class EvaluateResult:
    metrics: dict[str, float]
    n: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_logits(model_dir: Path, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Logits of the saved PyTorch model (fp32, eval mode) for `texts`, in order."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            chunks.append(model(**batch).logits.float().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.num_labels), dtype=np.float32)


def label_indices(labels: pd.Series, label_names: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(label_names)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def evaluate(cfg: PipelineConfig, run: RunDir) -> EvaluateResult:
    """The task's metrics on the test split (classification: accuracy, macro-F1, per-class P/R/F1; tokens:
    seqeval entity P/R/F1 micro and per type, token accuracy), its confusion matrix and logits."""
    start = time.perf_counter()
    test = pd.read_parquet(run.split_file("test"))
    metrics, logits = task_for(cfg.task).evaluate(run.model_dir, test, cfg)

    run.predictions.parent.mkdir(parents=True, exist_ok=True)
    np.save(run.predictions, logits)
    plot_confusion_matrix(metrics["confusion_matrix"], cfg.data.labels, run.confusion_png)
    write_json(run.metrics, metrics)
    return EvaluateResult(metrics=flat_metrics(metrics), n=len(test), seconds=round(time.perf_counter() - start, 3))


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
