"""Step 6, gate: the checks a challenger must pass before it may become champion."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib import registry
from pipeline_lib.config import PipelineConfig
from pipeline_lib.evaluation import label_indices
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.metrics import classification_metrics, flat_metrics


@dataclass
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark}  {self.name:<28} {self.detail}"


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    champion: dict[str, Any] | None = None  # the champion compared against, re-scored on this test split
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def table(self) -> str:
        return "\n".join(check.line() for check in self.checks)


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
    """ONNX must agree with PyTorch: logits close, predictions the same."""
    diff, agreement = export_summary["max_abs_logit_diff"], export_summary["agreement"]
    return [
        GateCheck(
            "onnx:max_abs_logit_diff",
            diff <= cfg.gates.max_abs_logit_diff,
            diff,
            cfg.gates.max_abs_logit_diff,
            f"{diff:.2e} <= {cfg.gates.max_abs_logit_diff:.0e}",
        ),
        GateCheck(
            "onnx:agreement",
            agreement >= cfg.gates.min_onnx_agreement,
            agreement,
            cfg.gates.min_onnx_agreement,
            f"{agreement:.4f} >= {cfg.gates.min_onnx_agreement:.4f}",
        ),
    ]


def rescore_champion(cfg: PipelineConfig, client: Any, version: Any, test: pd.DataFrame) -> dict[str, float] | None:
    """The champion's metrics on *this* test split (not its old logged figures), via its ONNX graph.
    None when its label set differs (the two cannot be compared)."""
    from pipeline_lib.inference import OnnxPredictor

    onnx_dir = registry.onnx_dir_for(cfg, client, version.name, version.version)
    predictor = OnnxPredictor.from_dir(onnx_dir)
    if list(predictor.labels) != list(cfg.data.labels):
        return None
    logits = predictor.logits(list(test["text"]))
    y_true = label_indices(test["label"], cfg.data.labels)
    return flat_metrics(classification_metrics(y_true, np.argmax(logits, axis=-1), cfg.data.labels))


def champion_check(
    cfg: PipelineConfig, metrics: dict[str, float], champion: dict[str, float] | None, version: str
) -> GateCheck:
    """The challenger must beat the re-scored champion by the configured margin (ties never promote)."""
    name = cfg.gates.compare_metric
    if champion is None:
        return GateCheck(f"beats_champion:{name}", False, None, None, f"champion v{version} has another label set")
    delta = metrics[name] - champion[name]
    margin = cfg.gates.min_improvement
    passed = delta > 0 and delta >= margin
    detail = (
        f"{metrics[name]:.4f} vs champion v{version} {champion[name]:.4f} (delta {delta:+.4f}, need >= {margin:+.4f})"
    )
    return GateCheck(f"beats_champion:{name}", passed, delta, margin, detail)


def gate(cfg: PipelineConfig, run: RunDir) -> GateResult:
    """Floors, ONNX parity, and no regression against the current champion re-scored on this test split."""
    start = time.perf_counter()
    metrics = flat_metrics(read_json(run.metrics))
    if cfg.gates.compare_metric not in metrics:
        raise ValueError(
            f"gates.compare_metric={cfg.gates.compare_metric}: unknown metric; known: {', '.join(sorted(metrics))}"
        )
    checks = floor_checks(metrics, cfg.gates.floors) + parity_checks(cfg, read_json(run.export_summary))

    client = registry.connect(cfg)
    current = registry.alias_version(client, cfg.registry.model_name, registry.CHAMPION)
    champion_info = None
    if current is None:
        checks.append(GateCheck("beats_champion", True, None, None, "no champion yet: nothing to regress against"))
    else:
        test = pd.read_parquet(run.split_file("test"))
        rescored = rescore_champion(cfg, client, current, test)
        checks.append(champion_check(cfg, metrics, rescored, str(current.version)))
        champion_info = {"version": str(current.version), "run_id": current.run_id, "metrics": rescored}

    result = GateResult(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion=champion_info,
        seconds=round(time.perf_counter() - start, 3),
    )
    write_json(run.gate_verdicts, result.to_dict())
    return result
