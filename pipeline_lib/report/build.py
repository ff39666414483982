"""A model card (markdown) and a self-contained HTML report for a registered version, built from the run
directory: test metrics with bootstrap CIs, gate table, confusion matrix and training curves (embedded PNGs),
data summary and the Great Expectations result."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json
from pipeline_lib.report.plots import drift_png, training_curves_png
from pipeline_lib.task_types.bootstrap import metric_ci
from pipeline_lib.task_types.metrics import flat_metrics

TEMPLATES = Path(__file__).with_name("templates")
HTML_TEMPLATE = "report.html.j2"
CARD_TEMPLATE = "model_card.md.j2"


def _png_base64(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def metrics_with_ci(cfg: PipelineConfig, run: RunDir) -> list[dict[str, Any]]:
    """Each scalar test metric with a bootstrap CI (CIs for one-label-per-text tasks, from the saved logits)."""
    flat = flat_metrics(read_json(run.metrics))
    labels = list(cfg.data.label_names)
    y_true = y_pred = None
    if cfg.task == "sequence_classification" and run.predictions.is_file():
        test = pd.read_parquet(run.split_file("test"), columns=["label"])
        index = {label: i for i, label in enumerate(labels)}
        y_true = test["label"].map(index).to_numpy(dtype=np.int64)
        y_pred = np.load(run.predictions).argmax(axis=-1)
    rows = []
    for name, value in flat.items():
        low = high = None
        if y_true is not None:
            low, high = metric_ci(
                y_true,
                y_pred,
                labels,
                name,
                cfg.gates.bootstrap_resamples,
                cfg.gates.bootstrap_confidence,
                cfg.gates.bootstrap_seed,
            )
        rows.append({"name": name, "value": value, "low": low, "high": high})
    return rows


def gx_summary(gx_result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per split: success, number of expectations, rules that failed."""
    rows = []
    for split, result in gx_result.items():
        if not isinstance(result, dict):  # another task's validator may store a different structure
            continue
        results = result.get("results", [])
        failed = [
            r["expectation_config"].get("meta", {}).get("rule") or r["expectation_config"]["type"]
            for r in results
            if not r.get("success", False)
        ]
        rows.append({"split": split, "success": bool(result.get("success")), "total": len(results), "failed": failed})
    return rows


def report_context(
    cfg: PipelineConfig,
    run: RunDir,
    *,
    name: str,
    version: str,
    alias: str,
    reason: str,
    run_id: str,
    tags: dict[str, str],
) -> dict[str, Any]:
    """Everything the two templates show."""
    gates = read_json(run.gate_verdicts)
    validation = read_json(run.validation_report)
    metrics = metrics_with_ci(cfg, run)
    return {
        "name": name,
        "version": version,
        "alias": alias,
        "promoted": alias == "champion",
        "reason": reason,
        "run_id": run_id,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "task": cfg.task,
        "base_model": cfg.model.name,
        "labels": list(cfg.data.label_names),
        "metrics": metrics,
        "n_test": read_json(run.metrics).get("n"),
        "confidence_pct": round(cfg.gates.bootstrap_confidence * 100),
        "resamples": cfg.gates.bootstrap_resamples,
        "checks": gates["checks"],
        "champion": gates.get("champion"),
        "confusion_png": _png_base64(run.confusion_png),
        "curves_png": training_curves_png(read_json(run.train_history) if run.train_history.is_file() else []),
        "data": {
            "path": tags.get("data.path", cfg.data.path),
            "md5": tags.get("data.md5", "?"),
            "split_method": tags.get("data.split_method", validation.get("split_method") or "?"),
            "rows": validation.get("rows", {}),
            "label_counts": validation.get("label_counts", {}),
        },
        "gx": gx_summary(read_json(run.gx_result)) if run.gx_result.is_file() else [],
        "drift": drift_section(run),
        "label_issues": label_issues_section(run, validation.get("label_issues") or {}),
        "git": {"commit": tags.get("git.commit", "?"), "dirty": tags.get("git.dirty") == "True"},
        "config_hash": tags.get("config.hash", cfg.config_hash()),
        "train": read_json(run.train_summary),
        "export": read_json(run.export_summary),
    }


def label_issues_section(run: RunDir, checked: dict[str, Any], examples: int = 25) -> dict[str, Any]:
    """The label check's summary line, its given → suggested counts and the most suspect rows."""
    import pandas as pd

    if checked.get("status") != "checked":
        return {"summary": checked.get("status", "not run"), "pairs": {}, "examples": []}
    summary = (
        f"{checked['flagged']} of {checked['checked']} rows flagged ({checked['setting']}); "
        f"{checked['dropped']} dropped from train and validation before training"
        + (f"; champion v{checked['champion']} scored the rows it never saw" if checked.get("champion") else "")
        + (
            f"; {checked['unchecked']} rows not embedded yet (data.label_check.budget): checked in later runs"
            if checked.get("unchecked")
            else ""
        )
    )
    rows = pd.read_parquet(run.label_issues).head(examples) if run.label_issues.is_file() else pd.DataFrame()
    records = [{**r, "champion_label": r.get("champion_label") or None} for r in rows.to_dict("records")]
    return {"summary": summary, "pairs": checked.get("pairs", {}), "examples": records}


def drift_section(run: RunDir) -> dict[str, Any]:
    """The drift report of the run, with a plot per feature (champion's training split beside this one)."""
    report = read_json(run.drift) if run.drift.is_file() else {"status": "not measured"}
    features = report.get("features", [])
    return {**report, "features": [{**f, "png": drift_png(f)} for f in features]}


def render(template: str, context: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(template).render(**context)


def write_reports(cfg: PipelineConfig, run: RunDir, **identity: Any) -> dict[str, Path]:
    """`report/model_card.md` and `report/report.html` in the run directory."""
    context = report_context(cfg, run, **identity)
    folder = run.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model_card": folder / "model_card.md", "html": folder / "report.html"}
    paths["model_card"].write_text(render(CARD_TEMPLATE, context), encoding="utf-8")
    paths["html"].write_text(render(HTML_TEMPLATE, context), encoding="utf-8")
    return paths
