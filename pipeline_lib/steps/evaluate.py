"""Step 5, evaluate: score the fine-tuned model on the held-out test split. Classification scores it through the
ONNX graph the export step chose to serve (the metric of the model users get, at serving speed; the export's parity
checked that graph against PyTorch on a seeded sample of the same rows), scoring only the rows the export step has
not already scored with that graph (`runtime.scored_rows`); token classification, and a run without an
export, through PyTorch at inference speed (`task_types.inference`: the run's precision where the hardware has it,
every core, length-sorted batches)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.report.plots import plot_confusion_matrix
from pipeline_lib.runtime.predictor import META_FILE, ONNX_FILE, OnnxPredictor
from pipeline_lib.runtime.scored_rows import ScoredRows
from pipeline_lib.task_types import task_for
from pipeline_lib.task_types.inference import inference_settings
from pipeline_lib.task_types.metrics import flat_metrics


@dataclass
class EvaluateResult:
    metrics: dict[str, float]
    n: int
    seconds: float
    precision: str = "fp32"  # fp32, bf16 (PyTorch on bf16 hardware) or int8 (a served int8 graph)
    rows_per_second: float = 0.0  # test rows scored per second of the step (model load included)
    runtime: str = "pytorch"  # or the served ONNX runtime that scored it (`onnxruntime-fp32`, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(cfg: PipelineConfig, run: RunDir) -> EvaluateResult:
    """The task's metrics on the test split (classification: accuracy, macro-F1, per-class P/R/F1; tokens:
    seqeval entity P/R/F1 micro and per type, token accuracy), its confusion matrix and logits."""
    start = time.perf_counter()
    test = pd.read_parquet(run.split_file("test"))
    task = task_for(cfg.task)
    if cfg.task == "sequence_classification" and (run.onnx_dir / META_FILE).is_file():
        predictor = OnnxPredictor.from_dir(run.onnx_dir, num_threads=cfg.train.num_threads)
        meta = read_json(run.onnx_dir / META_FILE)
        runtime = meta.get("runtime") or "onnxruntime-fp32"
        device = "cuda" if predictor.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        served = ScoredRows(predictor.logits, test["text"].astype(str).tolist())
        graph = run.onnx_dir / meta.get("graph", ONNX_FILE)
        reused = 0 if device == "cuda" else served.load(run.export_scored, graph, run.split_file("test"))
        metrics, logits = task.evaluate(run.model_dir, test, cfg, logits=served.logits())
        scored = {"runtime": runtime, "precision": "int8" if "int8" in runtime else "fp32", "device": device}
        scored["rows_scored_by_export"] = reused  # the served graph's logits of those rows, computed there
    else:
        settings = inference_settings(cfg.train.precision, cfg.train.num_threads, run.train_summary)
        metrics, logits = task.evaluate(run.model_dir, test, cfg, settings)
        scored = {"runtime": "pytorch", "precision": settings.precision, "device": settings.device}

    run.predictions.parent.mkdir(parents=True, exist_ok=True)
    np.save(run.predictions, logits)
    write_json(run.predictions_info, scored)
    plot_confusion_matrix(metrics["confusion_matrix"], cfg.data.label_names, run.confusion_png)
    write_json(run.metrics, metrics)
    seconds = time.perf_counter() - start
    return EvaluateResult(
        metrics=flat_metrics(metrics),
        n=len(test),
        seconds=round(seconds, 3),
        precision=scored["precision"],
        rows_per_second=round(len(test) / seconds, 1) if seconds > 0 else 0.0,
        runtime=scored["runtime"],
    )
