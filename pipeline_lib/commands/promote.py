"""`tunepipe promote NAME VERSION`: re-gate a registered version against the current champion on the version's own
logged test split and move `champion` if it passes (or, forced, for a stated reason); a refusal is ledgered."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.gates.champion import current_champion, onnx_predictions
from pipeline_lib.gates.checks import GateResult, evaluate_gates
from pipeline_lib.registry import store
from pipeline_lib.registry.promotion import (
    PromotionError,
    PromotionResult,
    champion_version,
    failed_reason,
    move_champion,
    record,
)
from pipeline_lib.runtime.predictor import META_FILE

TEST_SPLIT_ARTIFACT = "data/test.parquet"


EXPORT_SUMMARY_ARTIFACT = "export/summary.json"


def _download(run_id: str, artifact: str, what: str, ref: str, into: Path) -> Path:
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(into)))
    except Exception as exc:
        raise PromotionError(f"{ref}: its run has no {what} ({artifact}); register it again to gate it") from exc


def gate_version(cfg: PipelineConfig, client: Any, name: str, version: Any) -> GateResult:
    """Re-run every gate for a registered version: it and the current champion are re-scored (ONNX) on the
    version's own logged test split."""
    ref = f"{name}/{version.version}"
    with tempfile.TemporaryDirectory(prefix="tunepipe-gate-") as scratch:
        test = pd.read_parquet(_download(version.run_id, TEST_SPLIT_ARTIFACT, "logged test split", ref, Path(scratch)))
        summary_file = _download(version.run_id, EXPORT_SUMMARY_ARTIFACT, "export summary", ref, Path(scratch))
        summary = json.loads(summary_file.read_text())
    onnx_dir = store.onnx_dir_for(cfg, client, name, str(version.version))
    if not cfg.data.labels:  # inferred at its training: the version's own labels, as its ONNX folder records them
        labels = json.loads((onnx_dir / META_FILE).read_text(encoding="utf-8"))["labels"]
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"inferred_labels": labels})})
    texts = test["text"].astype(str).tolist()
    pred = onnx_predictions(onnx_dir, texts, cfg.data.label_names)
    if pred is None:
        raise PromotionError(f"{ref}: its labels differ from data.labels {cfg.data.labels} in the config")
    champion = current_champion(cfg, client, texts, name)
    return evaluate_gates(cfg, test=test, pred=pred, export_summary=summary, onnx_dir=onnx_dir, champion=champion)


def promote(
    cfg: PipelineConfig, name: str, version: str, *, force: bool = False, reason: str | None = None
) -> PromotionResult:
    """Make `name/version` champion if it passes the gates against the current champion (or, with
    `force`, without gating, for a stated reason). A refusal is ledgered and moves nothing."""
    client = store.connect(cfg)
    target = store.resolve(client, store.ModelRef(name=name, version=str(version)))
    previous = champion_version(client, name)
    if previous == str(target.version):
        raise PromotionError(f"{name}/{version} is already the champion")
    if force:
        if not reason or not reason.strip():
            raise PromotionError('--force needs --reason "...": a forced promotion must say why')
        move_champion(
            client,
            name,
            str(target.version),
            expected=previous,
            action="force-promote",
            reason=reason.strip(),
            force=True,
            run_id=target.run_id,
        )
        return PromotionResult(name, str(target.version), "force-promote", True, previous, reason.strip())
    result = gate_version(cfg, client, name, target).to_dict()
    compared = (result.get("champion") or {}).get("version")
    if result["passed"]:
        why = reason or "every gate passed"
        move_champion(
            client,
            name,
            str(target.version),
            expected=compared,
            action="promote",
            reason=why,
            gates=result,
            run_id=target.run_id,
        )
        return PromotionResult(name, str(target.version), "promote", True, compared, why, result)
    why = failed_reason(result)
    record(
        client,
        name,
        str(target.version),
        action="refuse",
        previous=compared,
        reason=why,
        gates=result,
        run_id=target.run_id,
    )
    return PromotionResult(name, str(target.version), "refuse", False, compared, why, result)
