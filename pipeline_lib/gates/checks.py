"""The checks a challenger must pass before it may become champion, each with its figures.

`evaluate_gates` is the one place the checks are assembled; the gate step (a fresh run) and `commands.promote`
(a registered version) both call it with the challenger's predictions on its test split and the current
champion's predictions re-scored on that same split.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.gates.champion import Champion, Comparison, comparison_rows, measure_latency
from pipeline_lib.gates.slices import slice_mask
from pipeline_lib.task_types import task_for
from pipeline_lib.task_types.bootstrap import fast_metric


@dataclass
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    figures: dict[str, Any] | None = None  # e.g. the bootstrap's delta, CI and p-value

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark}  {self.name:<32} {self.detail}"


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    champion: dict[str, Any] | None = None  # the champion compared against, re-scored on this test split
    seconds: float = 0.0
    teacher: dict[str, Any] | None = None  # a distilled run: its teacher beside it on this test split (no gate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def table(self) -> str:
        lines = [check.line() for check in self.checks]
        if self.teacher:
            t = self.teacher
            lines.append(
                f"  teacher {t['teacher']}: {t['metric']} {t['teacher_metric']:.4f} (this student "
                f"{t['student_metric']:.4f}), agreement {t['agreement']:.3f} on {t['rows']} test rows"
            )
        return "\n".join(lines)


# --- single checks ---------------------------------------------------------------------------------------


def floor_checks(metrics: dict[str, float], floors: dict[str, float]) -> list[GateCheck]:
    """`metric >= floor` for every configured floor; an unknown metric name is a configuration error."""
    checks = []
    for name, floor in floors.items():
        if name not in metrics:
            raise ValueError(f"gates.floors.{name}: unknown metric; known: {', '.join(sorted(metrics))}")
        value = metrics[name]
        checks.append(GateCheck(f"floor:{name}", value >= floor, value, floor, f"{value:.4f} >= {floor:.4f}"))
    return checks


def parity_checks(cfg: PipelineConfig, export_summary: dict[str, Any]) -> list[GateCheck]:
    """ONNX must agree with PyTorch: logits close, predictions the same, the task metric unchanged;
    the int8 graph (when exported) within its own, looser budget."""
    g = cfg.gates
    diff, agreement = export_summary["max_abs_logit_diff"], export_summary["agreement"]
    rows = f" on {export_summary['n']} of {export_summary['of']} test rows" if export_summary.get("of") else ""
    checks = [
        GateCheck(
            "onnx:max_abs_logit_diff",
            diff <= g.max_abs_logit_diff,
            diff,
            g.max_abs_logit_diff,
            f"{diff:.2e} <= {g.max_abs_logit_diff:.0e}{rows}",
        ),
        GateCheck(
            "onnx:agreement",
            agreement >= g.min_onnx_agreement,
            agreement,
            g.min_onnx_agreement,
            f"{agreement:.4f} >= {g.min_onnx_agreement:.4f}{rows}",
        ),
    ]
    if "metric_torch" in export_summary and "metric_onnx" in export_summary:
        gap = abs(export_summary["metric_torch"] - export_summary["metric_onnx"])
        checks.append(
            GateCheck(
                "onnx:metric_diff",
                gap <= g.max_onnx_metric_diff,
                gap,
                g.max_onnx_metric_diff,
                f"|{export_summary['metric_torch']:.4f} - {export_summary['metric_onnx']:.4f}| = {gap:.4f} "
                f"<= {g.max_onnx_metric_diff:.4f}",
            )
        )
    int8 = export_summary.get("int8")
    if int8:
        drop = export_summary["metric_torch"] - int8["metric"]
        checks += [
            GateCheck(
                "int8:agreement",
                int8["agreement"] >= g.min_int8_agreement,
                int8["agreement"],
                g.min_int8_agreement,
                f"{int8['agreement']:.4f} >= {g.min_int8_agreement:.4f}",
            ),
            GateCheck(
                "int8:metric_drop",
                drop <= g.max_int8_metric_drop,
                drop,
                g.max_int8_metric_drop,
                f"{export_summary['metric_torch']:.4f} - {int8['metric']:.4f} = {drop:+.4f} "
                f"<= {g.max_int8_metric_drop:.4f}",
            ),
        ]
    return checks


def budget_checks(cfg: PipelineConfig, size_mb: float, latency: dict[str, float] | None) -> list[GateCheck]:
    """Model size and batch-1 CPU latency within the configured budgets (a None budget is not checked)."""
    g, checks = cfg.gates, []
    if g.max_model_mb is not None:
        checks.append(
            GateCheck(
                "budget:size_mb",
                size_mb <= g.max_model_mb,
                size_mb,
                g.max_model_mb,
                f"{size_mb:.1f} MB <= {g.max_model_mb:.1f} MB",
            )
        )
    for quantile, budget in (("p50", g.latency_p50_ms), ("p95", g.latency_p95_ms)):
        if budget is not None and latency is not None:
            value = latency[f"{quantile}_ms"]
            checks.append(
                GateCheck(
                    f"budget:latency_{quantile}_ms",
                    value <= budget,
                    value,
                    budget,
                    f"{value:.2f} ms <= {budget:.1f} ms (batch 1, CPU, {latency['threads']} thread(s), "
                    f"{latency['n']} texts)",
                )
            )
    return checks


def champion_check(
    cfg: PipelineConfig,
    y_true: np.ndarray,
    pred: np.ndarray,
    champion: Champion,
    test: pd.DataFrame | None = None,
    comparison: Comparison | None = None,
) -> GateCheck:
    """Paired bootstrap of challenger − champion on the compare metric, on the test rows the champion never saw
    (`comparison`; None: all rows): promote only when the challenger is not significantly worse (CI lower bound
    > −tolerance) and beats the champion by the margin (ties never)."""
    g, name = cfg.gates, cfg.gates.compare_metric
    check_name = f"beats_champion:{name}"
    if champion.pred is None:
        return GateCheck(check_name, False, None, None, f"champion v{champion.version} has another label set")
    figures = comparison.to_dict() if comparison is not None else {}
    if comparison is not None and comparison.refused:
        return GateCheck(check_name, False, None, None, comparison.refused, figures)
    task = task_for(cfg.task)
    champion_pred = champion.pred
    if comparison is not None and comparison.n < comparison.n_test:
        units = task.unit_mask(test, comparison.rows)  # rows, or the words of those sentences for NER
        test, y_true, pred, champion_pred = test[comparison.rows], y_true[units], pred[units], champion_pred[units]
    boot = task.paired_bootstrap(  # resamples texts, or whole sentences for NER (needs `test`)
        test,
        y_true,
        pred,
        champion_pred,
        list(cfg.data.label_names),
        name,
        resamples=g.bootstrap_resamples,
        confidence=g.bootstrap_confidence,
        seed=g.bootstrap_seed,
    )
    beats = boot.delta > 0 and boot.delta >= g.min_improvement
    not_worse = boot.ci_low > -g.regression_tolerance
    detail = (
        f"{boot.challenger:.4f} vs champion v{champion.version} {boot.champion:.4f}: delta {boot.delta:+.4f} "
        f"(need >= {g.min_improvement:+.4f}), {boot.confidence:.0%} CI [{boot.ci_low:+.4f}, {boot.ci_high:+.4f}] "
        f"(low must be > {-g.regression_tolerance:+.4f}), P(not better) {boot.p_not_better:.3f}"
    )
    if comparison is not None:
        detail += f", {comparison.describe()}"
    return GateCheck(check_name, beats and not_worse, boot.delta, g.min_improvement, detail, boot.to_dict() | figures)


def slice_checks(
    cfg: PipelineConfig,
    texts: list[str],
    y_true: np.ndarray,
    pred: np.ndarray,
    champion: Champion | None,
    comparison: Comparison | None = None,
) -> list[GateCheck]:
    """Per configured slice: a floor on the challenger, and no regression against the re-scored champion on the
    slice's rows the champion never saw (`comparison`)."""
    labels, checks = list(cfg.data.label_names), []
    compared = comparison.rows if comparison is not None else np.ones(len(texts), dtype=bool)
    for s in cfg.gates.slices:
        mask = slice_mask(texts, s)
        n = int(mask.sum())
        if n == 0:
            checks.append(GateCheck(f"slice:{s.name}", True, None, None, "no test rows in this slice: not checked"))
            continue
        value = fast_metric(y_true[mask], pred[mask], len(labels), s.metric, labels)
        if s.floor is not None:
            checks.append(
                GateCheck(
                    f"slice:{s.name}:floor",
                    value >= s.floor,
                    value,
                    s.floor,
                    f"{s.metric} {value:.4f} >= {s.floor:.4f} on {n} rows",
                )
            )
        both = mask & compared
        if s.no_regression and champion is not None and champion.pred is not None and both.any():
            value = fast_metric(y_true[both], pred[both], len(labels), s.metric, labels)
            base = fast_metric(y_true[both], champion.pred[both], len(labels), s.metric, labels)
            delta = value - base
            n = int(both.sum())
            checks.append(
                GateCheck(
                    f"slice:{s.name}:no_regression",
                    delta >= -s.tolerance,
                    delta,
                    -s.tolerance,
                    f"{s.metric} {value:.4f} vs champion v{champion.version} {base:.4f} (delta {delta:+.4f} "
                    f">= {-s.tolerance:+.4f}) on {n} rows",
                )
            )
    return checks


# --- all checks ----------------------------------------------------------------------------------------


def evaluate_gates(
    cfg: PipelineConfig,
    *,
    test: pd.DataFrame,
    pred: np.ndarray,
    export_summary: dict[str, Any],
    onnx_dir: Path,
    champion: Champion | None,
) -> GateResult:
    """Every configured check for a challenger whose test-split predictions are `pred`."""
    start = time.perf_counter()
    labels = list(cfg.data.label_names)
    texts = test["text"].astype(str).tolist()
    task = task_for(cfg.task)  # what one entry of y_true / pred is (a text, or a word for NER) and its metrics
    y_true = task.gold(test, labels)
    metrics = task.gate_metrics(test, y_true, pred, labels)
    if cfg.gates.compare_metric not in metrics:
        raise ValueError(
            f"gates.compare_metric={cfg.gates.compare_metric}: unknown metric; known: {', '.join(sorted(metrics))}"
        )
    latency = None
    if cfg.gates.latency_p50_ms is not None or cfg.gates.latency_p95_ms is not None:
        latency = measure_latency(onnx_dir, texts, cfg.gates.latency_threads, cfg.gates.latency_samples)
    checks = (
        floor_checks(metrics, cfg.gates.floors)
        + parity_checks(cfg, export_summary)
        + budget_checks(cfg, export_summary["size_mb"], latency)
    )
    champion_info, comparison = None, None
    if champion is None:
        checks.append(GateCheck("beats_champion", True, None, None, "no champion yet: nothing to regress against"))
    else:
        comparison = comparison_rows(test, champion, cfg.gates.champion_min_rows)
        checks.append(champion_check(cfg, y_true, pred, champion, test=test, comparison=comparison))
        rescored = None
        if champion.pred is not None and not comparison.refused:
            units = task.unit_mask(test, comparison.rows)
            rescored = task.gate_metrics(test[comparison.rows], y_true[units], champion.pred[units], labels)
        champion_info = {
            "version": champion.version,
            "run_id": champion.run_id,
            "metrics": rescored,  # on the compared rows
            "split_method": champion.split_method,
            **comparison.to_dict(),
        }
    checks += slice_checks(cfg, texts, y_true, pred, champion, comparison)
    return GateResult(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion=champion_info,
        seconds=round(time.perf_counter() - start, 3),
    )
