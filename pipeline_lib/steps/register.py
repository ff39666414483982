"""Step 7, register: log the run to MLflow, register the ONNX pyfunc with its lineage, move an alias.

The alias move is the last act (the commit point) and is checked against the champion the gates compared with,
so a concurrent promotion is never overwritten. Until it lands, a journal in the run directory records what the
attempt created (run, version, ledger record), so a failure, or a tracking server that goes away, is rolled back:
at once, by the next retry, or by the next registration once the server answers again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.registry import store
from pipeline_lib.registry.errors import RegistryUnavailable
from pipeline_lib.registry.journal import Journal
from pipeline_lib.registry.lineage import lineage_tags
from pipeline_lib.registry.registration import attempt
from pipeline_lib.registry.retries import retry_unreachable


@dataclass
class RegisterResult:
    name: str
    version: str
    alias: str
    promoted: bool
    previous_champion: str | None
    reason: str
    run_id: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(cfg: PipelineConfig, run: RunDir) -> RegisterResult:
    """Register the exported model with full lineage; alias `champion` if it earned it, else `challenger`.

    Retried with back-off while the tracking server is unreachable (`registry.retries`, `registry.retry_wait_s`);
    every retry first rolls back what the interrupted attempt left. A server that stays away ends it with
    `RegistryUnavailable`, saying what was left behind (nothing, unless it went away after the model version was
    created, in which case the journal in the run directory lets the next registration take that back)."""
    start = time.perf_counter()
    gates = read_json(run.gate_verdicts)
    tags = lineage_tags(cfg, run, gates)
    uri = store.tracking_uri(cfg)
    journal = Journal.for_run(run, uri, cfg.registry.model_name)
    doing: list[str] = []

    def give_up(attempts: int, exc: BaseException) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"MLflow tracking server at {uri} unreachable after {attempts} attempts during {journal.stage}"
            f"{' (and ' + doing[0] + ')' if doing else ''}: {journal.left_behind()} (last error: {str(exc)[:300]})"
        )

    outcome = retry_unreachable(
        lambda number: attempt(cfg, run, journal, gates, tags, doing),
        retries=cfg.registry.retries,
        wait_s=cfg.registry.retry_wait_s,
        on_give_up=give_up,
    )
    result = RegisterResult(name=cfg.registry.model_name, **outcome, seconds=round(time.perf_counter() - start, 3))
    write_json(run.registration, result.to_dict())
    return result
