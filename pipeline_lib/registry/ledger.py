"""The ledger of a registered model: one record per promotion, refusal and rollback, kept as registered-model
tags (`ledger.<time>.v<version>`) so it lives in the registry itself, beside the aliases it explains."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pipeline_lib.registry.store import is_missing

LEDGER_PREFIX = "ledger."


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def append(client: Any, name: str, entry: dict[str, Any]) -> str:
    """Append one promotion/refusal record (a registered-model tag keyed by time and version); its key."""
    entry = {"time": now_utc(), **entry}
    key = f"{LEDGER_PREFIX}{entry['time'].replace(':', '').replace('+', 'Z')}.v{entry.get('version', '-')}"
    client.set_registered_model_tag(name, key, json.dumps(entry, sort_keys=True, default=str))
    return key


def delete_entries(client: Any, name: str, *, run_id: str | None = None, key: str | None = None) -> None:
    """Take back the ledger record `key`, or every record of MLflow run `run_id` (of an undone registration)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        if is_missing(exc):
            return
        raise
    for tag, value in tags.items():
        if tag.startswith(LEDGER_PREFIX) and (tag == key or (run_id and json.loads(value).get("run_id") == run_id)):
            client.delete_registered_model_tag(name, tag)


def read(client: Any, name: str) -> list[dict[str, Any]]:
    """Every ledger record of a registered model, oldest first."""
    model = client.get_registered_model(name)
    records = [json.loads(v) for k, v in sorted(model.tags.items()) if k.startswith(LEDGER_PREFIX)]
    return sorted(records, key=lambda r: r["time"])
