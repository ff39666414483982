"""Step 6, gate: this run's test predictions against the floors, the ONNX parity and budgets, and the champion
re-scored on the same test split (`gates.checks.evaluate_gates` assembles the checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.gates.champion import current_champion
from pipeline_lib.gates.checks import GateResult, evaluate_gates
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.registry import store


def gate(cfg: PipelineConfig, run: RunDir) -> GateResult:
    """The gate step: this run's PyTorch test predictions against the champion re-scored on this test split."""
    test = pd.read_parquet(run.split_file("test"))
    pred = np.load(run.predictions).argmax(axis=-1)
    champion = current_champion(cfg, store.connect(cfg), test["text"].astype(str).tolist())
    result = evaluate_gates(
        cfg,
        test=test,
        pred=pred,
        export_summary=read_json(run.export_summary),
        onnx_dir=run.onnx_dir,
        champion=champion,
    )
    if cfg.train.distill.teacher:
        from pipeline_lib.steps.teacher import teacher_figures
        from pipeline_lib.task_types import task_for

        y_true = task_for(cfg.task).gold(test, list(cfg.data.label_names))
        result.teacher = teacher_figures(cfg, test, y_true, pred)
    write_json(run.gate_verdicts, result.to_dict())
    return result
