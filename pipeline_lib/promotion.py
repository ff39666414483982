"""Champion promotion, refusal and rollback: every move of the `champion` alias goes through `move_champion`,
which checks the alias is still where the caller saw it, moves it as the last act, and writes the ledger."""

from __future__ import annotations

import contextlib
import getpass
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib import registry
from pipeline_lib.config import PipelineConfig
from pipeline_lib.gates import GateResult, current_champion, evaluate_gates, onnx_predictions

TEST_SPLIT_ARTIFACT = "data/test.parquet"
EXPORT_SUMMARY_ARTIFACT = "export/summary.json"
CHAMPION_ACTIONS = ("promote", "force-promote")


class PromotionError(RuntimeError):
    """A promotion or rollback cannot be done; the message says why. Nothing was changed."""


@dataclass
class PromotionResult:
    name: str
    version: str
    action: str  # promote | force-promote | refuse | rollback
    promoted: bool
    previous_champion: str | None
    reason: str
    gates: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def gate_summary(gates: dict[str, Any] | None) -> dict[str, str] | None:
    """The gate table in a ledger record: check name → PASS/FAIL."""
    if not gates:
        return None
    return {c["name"]: "PASS" if c["passed"] else "FAIL" for c in gates["checks"]}


def failed_reason(gates: dict[str, Any]) -> str:
    failed = [f"{c['name']} ({c['detail']})" for c in gates["checks"] if not c["passed"]]
    return "gates failed: " + "; ".join(failed)


def version_label(version: str | None) -> str:
    """`v3`, or `no champion` where there was none."""
    return "no champion" if version is None else f"v{version}"


def _champion_version(client: Any, name: str) -> str | None:
    current = registry.alias_version(client, name, registry.CHAMPION)
    return None if current is None else str(current.version)


def move_champion(
    client: Any,
    name: str,
    version: str,
    *,
    expected: str | None,
    action: str,
    reason: str,
    gates: dict[str, Any] | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> None:
    """Point `champion` at `version` if it still points at `expected`. The move is ledgered first and the alias
    moved last, so a failure never leaves an unledgered champion (the record is taken back if the move fails)."""
    with registry.alias_lock(name):
        seen = _champion_version(client, name)
        if seen != expected:
            raise PromotionError(
                f"{name}: champion changed from {version_label(expected)} to {version_label(seen)} meanwhile; "
                "nothing was moved"
            )
        key = record(
            client,
            name,
            version,
            action=action,
            previous=expected,
            reason=reason,
            gates=gates,
            force=force,
            run_id=run_id,
        )
        try:
            client.set_registered_model_alias(name, registry.CHAMPION, str(version))
        except BaseException:
            with contextlib.suppress(Exception):  # the server may be gone: a registration journal settles it
                registry.delete_ledger_entries(client, name, key=key)
            raise


def record(
    client: Any,
    name: str,
    version: str,
    *,
    action: str,
    previous: str | None,
    reason: str,
    gates: dict[str, Any] | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> str:
    """One ledger record: time (added by the registry), action, version, previous champion, gate table,
    reason, who, whether the gates were bypassed. Returns its key."""
    return registry.append_ledger(
        client,
        name,
        {
            "action": action,
            "version": str(version),
            "previous_champion": previous,
            "reason": reason,
            "gates": gate_summary(gates),
            "actor": actor(),
            "force": force,
            "run_id": run_id,
        },
    )


def champion_history(records: list[dict[str, Any]]) -> list[str]:
    """The champions in order as the ledger tells it: promotions push, rollbacks pop."""
    stack: list[str] = []
    for entry in records:
        if entry.get("action") in CHAMPION_ACTIONS:
            stack.append(str(entry["version"]))
        elif entry.get("action") == "rollback" and stack:
            stack.pop()
    return stack


# --- promote -------------------------------------------------------------------------------------------


def _download(run_id: str, artifact: str, what: str, ref: str) -> Path:
    import mlflow

    try:
        return Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tempfile.mkdtemp())
        )
    except Exception as exc:
        raise PromotionError(f"{ref}: its run has no {what} ({artifact}); register it again to gate it") from exc


def gate_version(cfg: PipelineConfig, client: Any, name: str, version: Any) -> GateResult:
    """Re-run every gate for a registered version: it and the current champion are re-scored (ONNX) on the
    version's own logged test split."""
    ref = f"{name}/{version.version}"
    test = pd.read_parquet(_download(version.run_id, TEST_SPLIT_ARTIFACT, "logged test split", ref))
    summary = json.loads(_download(version.run_id, EXPORT_SUMMARY_ARTIFACT, "export summary", ref).read_text())
    onnx_dir = registry.onnx_dir_for(cfg, client, name, str(version.version))
    texts = test["text"].astype(str).tolist()
    pred = onnx_predictions(onnx_dir, texts, list(cfg.data.labels))
    if pred is None:
        raise PromotionError(f"{ref}: its labels differ from data.labels {cfg.data.labels} in the config")
    champion = current_champion(cfg, client, texts, name)
    return evaluate_gates(cfg, test=test, pred=pred, export_summary=summary, onnx_dir=onnx_dir, champion=champion)


def promote(
    cfg: PipelineConfig, name: str, version: str, *, force: bool = False, reason: str | None = None
) -> PromotionResult:
    """Make `name/version` champion if it passes the gates against the current champion (or, with
    `force`, without gating, for a stated reason). A refusal is ledgered and moves nothing."""
    client = registry.connect(cfg)
    target = registry.resolve(client, registry.ModelRef(name=name, version=str(version)))
    previous = _champion_version(client, name)
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


def rollback(cfg: PipelineConfig, name: str, reason: str | None = None) -> PromotionResult:
    """Make the previous champion (from the ledger) champion again; refuse when there is none."""
    client = registry.connect(cfg)
    current = _champion_version(client, name)
    history = champion_history(registry.read_ledger(client, name))
    if current is None:
        raise PromotionError(f"{name} has no champion: nothing to roll back")
    if not history or history[-1] != current:
        raise PromotionError(
            f"{name}: champion is v{current} but the ledger's last champion is "
            f"{'v' + history[-1] if history else 'none'} (the alias was moved outside tunepipe); promote explicitly"
        )
    if len(history) < 2:
        raise PromotionError(f"{name}: v{current} is the first champion in the ledger; there is no previous one")
    target = history[-2]
    why = reason or f"rollback from v{current}"
    move_champion(client, name, target, expected=current, action="rollback", reason=why)
    return PromotionResult(name, target, "rollback", True, current, why)
