"""Moves of the `champion` alias: promotion, refusal and rollback all go through `move_champion`, which checks
the alias is still where the caller saw it, ledgers the move, and moves the alias as the last act. Re-gating a
registered version before promoting it is `commands.promote`."""

from __future__ import annotations

import contextlib
import getpass
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry import ledger, store

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


def comparison_summary(gates: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the champion was compared on, in a ledger record: its version, the test rows it had seen (overlap)
    and the rows compared."""
    champion = (gates or {}).get("champion")
    if not champion:
        return None
    keys = ("version", "split_method", "n_test", "overlap", "n_compared", "refused")
    return {key: champion.get(key) for key in keys}


def failed_reason(gates: dict[str, Any]) -> str:
    failed = [f"{c['name']} ({c['detail']})" for c in gates["checks"] if not c["passed"]]
    return "gates failed: " + "; ".join(failed)


def version_label(version: str | None) -> str:
    """`v3`, or `no champion` where there was none."""
    return "no champion" if version is None else f"v{version}"


def champion_version(client: Any, name: str) -> str | None:
    current = store.alias_version(client, name, store.CHAMPION)
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
    with store.alias_lock(name):
        seen = champion_version(client, name)
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
            client.set_registered_model_alias(name, store.CHAMPION, str(version))
        except BaseException:
            with contextlib.suppress(Exception):  # the server may be gone: a registration journal settles it
                ledger.delete_entries(client, name, key=key)
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
    return ledger.append(
        client,
        name,
        {
            "action": action,
            "version": str(version),
            "previous_champion": previous,
            "reason": reason,
            "gates": gate_summary(gates),
            "comparison": comparison_summary(gates),
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


def rollback(cfg: PipelineConfig, name: str, reason: str | None = None) -> PromotionResult:
    """Make the previous champion (from the ledger) champion again; refuse when there is none."""
    client = store.connect(cfg)
    current = champion_version(client, name)
    history = champion_history(ledger.read(client, name))
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
