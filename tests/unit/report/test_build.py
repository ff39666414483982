"""The model card and HTML report from a run directory's files (no registry needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.report.build import write_reports
from pipeline_lib.report.plots import plot_confusion_matrix
from pipeline_lib.task_types.metrics import classification_metrics

LABELS = ["negative", "neutral", "positive"]


def fake_run(root: Path) -> RunDir:
    """A run directory as the steps leave it before `register`, with 60 test rows and 80 % right."""
    run = RunDir(root)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.8, y, (y + 1) % 3)
    run.split_file("test").parent.mkdir(parents=True)
    pd.DataFrame({"text": [f"t{i}" for i in range(60)], "label": [LABELS[i] for i in y]}).to_parquet(
        run.split_file("test")
    )
    run.predictions.parent.mkdir(parents=True)
    np.save(run.predictions, np.eye(3)[pred])
    metrics = classification_metrics(y, pred, LABELS)
    write_json(run.metrics, metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], LABELS, run.confusion_png)
    check = {"name": "floor:accuracy", "passed": False, "value": 0.8, "threshold": 0.9, "detail": "0.80 >= <0.9>"}
    write_json(run.gate_verdicts, {"passed": False, "checks": [check], "champion": {"version": "3"}})
    write_json(run.validation_report, {"rows": {"train": 10, "test": 60}, "label_counts": {"test": {"neutral": 20}}})
    gx = {
        "success": False,
        "results": [{"success": False, "expectation_config": {"type": "x", "meta": {"rule": "r1"}}}],
    }
    write_json(run.gx_result, {"test": gx})
    write_json(run.train_history, [{"epoch": 1.0, "train_loss": 1.0, "val_loss": 0.9, "val_macro_f1": 0.5}])
    write_json(run.train_summary, {"global_step": 5, "epochs_run": 1.0, "precision": "fp32", "device": "cpu"})
    write_json(run.export_summary, {"size_mb": 87.5, "agreement": 1.0, "max_abs_logit_diff": 1e-6})
    return run


def test_reports_show_cis_gates_figures_and_escape_text(tmp_path: Path):
    run = fake_run(tmp_path / "run")
    cfg = load_config(None, ["gates.bootstrap_resamples=200", f"data.labels={LABELS}"])
    paths = write_reports(
        cfg, run, name="m", version="4", alias="challenger", reason="gates failed", run_id="abc", tags={}
    )
    card, html = paths["model_card"].read_text(), paths["html"].read_text()
    accuracy = next(line for line in card.splitlines() if line.startswith("| accuracy |"))
    value, ci = accuracy.split("|")[2].strip(), accuracy.split("|")[3].strip()
    low, high = (float(x) for x in ci.strip("[]").split(","))
    assert low < float(value) < high
    assert "| floor:accuracy | FAIL |" in card and "`@challenger`" in card
    assert "0.80 &gt;= &lt;0.9&gt;" in html, "gate details are HTML-escaped"
    assert html.count("data:image/png;base64,") == 2
    assert "champion v3" in html and ">r1<" in html and ">FAIL<" in html
