"""Step 4, evaluate: score the fine-tuned model on the held-out test split, at inference speed (`task_types.inference`:
the run's precision where the hardware has it, every core, length-sorted batches)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.report.plots import plot_confusion_matrix
from pipeline_lib.task_types import task_for
from pipeline_lib.task_types.inference import inference_settings
from pipeline_lib.task_types.metrics import flat_metrics


@dataclass
class EvaluateResult:
    metrics: dict[str, float]
    n: int
    seconds: float
    precision: str = "fp32"  # what PyTorch scored in (bf16 only on bf16 hardware)
    rows_per_second: float = 0.0  # test rows scored per second of the step (model load included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(cfg: PipelineConfig, run: RunDir) -> EvaluateResult:
    """The task's metrics on the test split (classification: accuracy, macro-F1, per-class P/R/F1; tokens:
    seqeval entity P/R/F1 micro and per type, token accuracy), its confusion matrix and logits."""
    start = time.perf_counter()
    test = pd.read_parquet(run.split_file("test"))
    settings = inference_settings(cfg.train.precision, cfg.train.num_threads, run.train_summary)
    metrics, logits = task_for(cfg.task).evaluate(run.model_dir, test, cfg, settings)

    run.predictions.parent.mkdir(parents=True, exist_ok=True)
    np.save(run.predictions, logits)
    write_json(run.predictions_info, {"precision": settings.precision, "device": settings.device})
    plot_confusion_matrix(metrics["confusion_matrix"], cfg.data.label_names, run.confusion_png)
    write_json(run.metrics, metrics)
    seconds = time.perf_counter() - start
    return EvaluateResult(
        metrics=flat_metrics(metrics),
        n=len(test),
        seconds=round(seconds, 3),
        precision=settings.precision,
        rows_per_second=round(len(test) / seconds, 1) if seconds > 0 else 0.0,
    )
