"""Step 7, register: log the run to MLflow, register the ONNX pyfunc with its lineage, move an alias.

The alias move is the last act (the commit point) and is checked against the champion the gates compared with,
so a concurrent promotion is never overwritten. Until it lands, a journal in the run directory records what the
attempt created (run, version, ledger record), so a failure, or a tracking server that goes away, is rolled back:
at once, by the next retry, or by the next registration once the server answers again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib import promotion, registry
from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.metrics import flat_metrics
from pipeline_lib.registration_journal import STATUS_TAG, Journal, settle, sweep
from pipeline_lib.report import write_reports
from pipeline_lib.resilience import RegistryUnavailable, is_unreachable, retry_unreachable
from pipeline_lib.versioning import data_fingerprint, git_state


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


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (lists kept as their JSON-ish string)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), child))
        return out
    return {prefix: value}


def lineage_tags(cfg: PipelineConfig, run: RunDir, gates: dict[str, Any]) -> dict[str, str]:
    """Tags on the model version: code, data and config versions, and the gate verdict."""
    git = git_state()
    data = data_fingerprint(cfg, run)
    failed = [c["name"] for c in gates["checks"] if not c["passed"]]
    tags = {
        "task": cfg.task,
        "git.commit": git["commit"],
        "git.dirty": str(git["dirty"]),
        "config.hash": cfg.config_hash(),
        "data.path": data["path"],
        "data.md5": str(data["md5"]),
        "data.dvc_md5": str(data["dvc_md5"]),
        "gates.passed": str(gates["passed"]),
        "gates.failed": ",".join(failed) or "-",
    }
    tags.update({f"data.split.{split}.md5": digest for split, digest in data["splits"].items()})
    return tags


def _open_run(client: Any, cfg: PipelineConfig, journal: Journal, tags: dict[str, str]) -> str:
    """A new MLflow run, journaled, that reads FAILED until the registration completes: a server that dies
    mid-way leaves no run claiming to be RUNNING or FINISHED."""
    exp_id = registry.experiment_id(cfg, client)
    journal.at("run creation")
    name = f"{cfg.registry.model_name}-{int(time.time())}"
    run_id = client.create_run(exp_id, run_name=name, tags={**tags, STATUS_TAG: "incomplete"}).info.run_id
    journal.at("logging params, metrics and artifacts", run_id=run_id)
    client.set_terminated(run_id, "FAILED")
    return run_id


def _log_run(client: Any, cfg: PipelineConfig, run: RunDir, run_id: str) -> str:
    """Params, per-epoch and test metrics, artifacts and the pyfunc model into MLflow run `run_id`; the model URI."""
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.models import Model

    from pipeline_lib.inference import pyfunc_log_kwargs

    metrics = flat_metrics(read_json(run.metrics))
    export_summary = read_json(run.export_summary)
    train_summary = read_json(run.train_summary)
    capability = train_summary.get("capability", {})
    params = {k: str(v)[:500] for k, v in flatten("", cfg.model_dump(mode="json")).items()}
    params |= {
        "resolved.precision": train_summary["precision"],
        "resolved.device": train_summary["device"],
        "resolved.device_name": capability.get("device_name"),
        "resolved.bf16_hardware": capability.get("bf16"),
        "resolved.cpu_bf16_flags": ",".join(capability.get("cpu_flags", [])) or "-",
        "resolved.world_size": train_summary.get("world_size", 1),
        "resolved.trainable": (train_summary.get("trainable") or {}).get("strategy", "none"),
    }
    now = int(time.time() * 1000)
    steps = [
        (round(row["epoch"] * 1000), {k: v for k, v in row.items() if k != "epoch"})
        for row in read_json(run.train_history)
    ]
    final = {f"test.{k}": v for k, v in metrics.items()} | {
        "onnx.max_abs_logit_diff": export_summary["max_abs_logit_diff"],
        "onnx.agreement": export_summary["agreement"],
        "onnx.size_mb": export_summary["size_mb"],
        "train.seconds": train_summary["seconds"],
        "train.samples_per_second": train_summary["train_samples_per_second"],
    }
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, float(v), now, step) for step, row in [*steps, (0, final)] for k, v in row.items()],
    )
    client.log_text(run_id, cfg.to_yaml(), "config.yaml")
    for path, folder in [
        (run.confusion_png, "eval"),
        (run.metrics, "eval"),
        (run.validation_report, "validation"),
        (run.gx_result, "validation"),
        (run.gate_verdicts, "gates"),
        (run.train_history, "train"),
        (run.train_summary, "train"),
        (run.export_summary, "export"),
        (run.split_file("test"), "data"),  # `tunepipe promote` re-gates on it
    ]:
        client.log_artifact(run_id, str(path), folder)
    info = Model.log(None, name="model", flavor=mlflow.pyfunc, run_id=run_id, **pyfunc_log_kwargs(run.onnx_dir))
    return info.model_uri


def decide_alias(client: Any, cfg: PipelineConfig, gates: dict[str, Any]) -> tuple[bool, str, Any]:
    """Promote only when every gate passed and the champion is still the one the gates compared with."""
    current = registry.alias_version(client, cfg.registry.model_name, registry.CHAMPION)
    compared = (gates.get("champion") or {}).get("version")
    current_version = str(current.version) if current is not None else None
    if not gates["passed"]:
        return False, promotion.failed_reason(gates), current
    if current_version != compared:
        return (
            False,
            f"champion changed from {promotion.version_label(compared)} to {promotion.version_label(current_version)}"
            " while this run was gated",
            current,
        )
    return True, "every gate passed", current


def _finish(client: Any, journal: Journal, alias: str, promoted: bool, previous: str | None, reason: str) -> None:
    """Journal the outcome and mark the run complete, just before the alias move (the commit point)."""
    outcome = {"alias": alias, "promoted": promoted, "previous_champion": previous, "reason": reason}
    journal.at("alias move", outcome=outcome)
    client.set_tag(journal.run_id, STATUS_TAG, "complete")
    client.set_terminated(journal.run_id, "FINISHED")


def _commit(
    client: Any, cfg: PipelineConfig, run: RunDir, journal: Journal, gates: dict[str, Any], tags: dict[str, str]
) -> dict[str, Any]:
    """Version → promotion tag and reports → ledger → alias. The alias moves last: until it has, the journal
    lets a retry or a later run take everything back."""
    import mlflow

    name, run_id = cfg.registry.model_name, str(journal.run_id)
    model_uri = _log_run(client, cfg, run, run_id)
    journal.at("version creation")
    number = str(mlflow.register_model(model_uri, name, tags={**tags, "run_id": run_id}).version)
    journal.at("reports", version=number)
    promoted, reason, current = decide_alias(client, cfg, gates)
    previous = str(current.version) if current is not None else None
    client.set_model_version_tag(name, number, "promotion", reason)
    alias = registry.CHAMPION if promoted else registry.CHALLENGER
    reports = write_reports(cfg, run, name=name, version=number, alias=alias, reason=reason, run_id=run_id, tags=tags)
    for path in reports.values():
        client.log_artifact(run_id, str(path), "report")
    if promoted:
        _finish(client, journal, alias, promoted, previous, reason)
        try:  # ledgered, then moved, checked against the champion the gates saw
            promotion.move_champion(
                client, name, number, expected=previous, action="promote", reason=reason, gates=gates, run_id=run_id
            )
            return journal.outcome
        except promotion.PromotionError as exc:  # another run promoted meanwhile: this one stays a challenger
            promoted, alias, reason = False, registry.CHALLENGER, str(exc)
            client.set_model_version_tag(name, number, "promotion", reason)
    promotion.record(
        client, name, number, action="refuse", previous=previous, reason=reason, gates=gates, run_id=run_id
    )
    _finish(client, journal, alias, promoted, previous, reason)
    client.set_registered_model_alias(name, alias, number)
    return journal.outcome


def _attempt(
    cfg: PipelineConfig, run: RunDir, journal: Journal, gates: dict[str, Any], tags: dict[str, str], doing: list[str]
) -> dict[str, Any]:
    """One registration attempt: settle what interrupted ones left behind, then register afresh (or not at all,
    when this run's interrupted attempt turns out to have committed). Returns the outcome."""
    client = registry.connect(cfg)
    doing[:] = ["while rolling back the interrupted attempt"]
    sweep(client, cfg.paths.artifacts, journal.tracking_uri, skip=journal.path)
    if journal.pending:
        landed = {**journal.outcome, "version": journal.version, "run_id": journal.run_id}
        if settle(client, journal, "retried after the tracking server became unreachable"):
            return landed
    doing.clear()
    try:
        run_id = _open_run(client, cfg, journal, tags)
        outcome = {**_commit(client, cfg, run, journal, gates, tags), "version": journal.version, "run_id": run_id}
    except Exception as exc:
        if journal.pending and not is_unreachable(exc):  # a server that answers: take it all back now
            with contextlib.suppress(Exception):
                settle(client, journal, f"{type(exc).__name__}: {exc}")
        raise
    journal.clear()
    return outcome


def register(cfg: PipelineConfig, run: RunDir) -> RegisterResult:
    """Register the exported model with full lineage; alias `champion` if it earned it, else `challenger`.

    Retried with back-off while the tracking server is unreachable (`registry.retries`, `registry.retry_wait_s`);
    every retry first rolls back what the interrupted attempt left. A server that stays away ends it with
    `RegistryUnavailable`, saying what was left behind (nothing, unless it went away after the model version was
    created, in which case the journal in the run directory lets the next registration take that back)."""
    start = time.perf_counter()
    gates = read_json(run.gate_verdicts)
    tags = lineage_tags(cfg, run, gates)
    uri = registry.tracking_uri(cfg)
    journal = Journal.for_run(run, uri, cfg.registry.model_name)
    doing: list[str] = []

    def give_up(attempts: int, exc: BaseException) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"MLflow tracking server at {uri} unreachable after {attempts} attempts during {journal.stage}"
            f"{' (and ' + doing[0] + ')' if doing else ''}: {journal.left_behind()} (last error: {str(exc)[:300]})"
        )

    outcome = retry_unreachable(
        lambda number: _attempt(cfg, run, journal, gates, tags, doing),
        retries=cfg.registry.retries,
        wait_s=cfg.registry.retry_wait_s,
        on_give_up=give_up,
    )
    result = RegisterResult(name=cfg.registry.model_name, **outcome, seconds=round(time.perf_counter() - start, 3))
    write_json(run.registration, result.to_dict())
    return result


def lineage(cfg: PipelineConfig, ref: str) -> dict[str, Any]:
    """Everything known about a registered version: run, metrics, gates, code, data and config."""
    import mlflow

    client = registry.connect(cfg)
    version = registry.resolve(client, registry.ModelRef.parse(ref))
    mlrun = client.get_run(version.run_id)
    gates = _load_json_artifact(version.run_id, "gates/verdicts.json")
    config_text = mlflow.artifacts.load_text(f"runs:/{version.run_id}/config.yaml")
    import yaml

    tags = version.tags
    return {
        "name": version.name,
        "version": str(version.version),
        "aliases": list(version.aliases),
        "run_id": version.run_id,
        "created": version.creation_timestamp,
        "metrics": {k.removeprefix("test."): v for k, v in mlrun.data.metrics.items() if k.startswith("test.")},
        "onnx": {k.removeprefix("onnx."): v for k, v in mlrun.data.metrics.items() if k.startswith("onnx.")},
        "gates": {"passed": gates["passed"], "checks": gates["checks"], "champion": gates.get("champion")},
        "promotion": tags.get("promotion"),
        "git": {"commit": tags.get("git.commit"), "dirty": tags.get("git.dirty")},
        "data": {
            "path": tags.get("data.path"),
            "md5": tags.get("data.md5"),
            "dvc_md5": tags.get("data.dvc_md5"),
            "splits": {k.split(".")[2]: v for k, v in tags.items() if k.startswith("data.split.")},
        },
        "config_hash": tags.get("config.hash"),
        "config": yaml.safe_load(config_text),
        "runtime": _load_json_artifact(version.run_id, "export/summary.json").get("runtime"),
        "precision": mlrun.data.params.get("resolved.precision"),
        "device": mlrun.data.params.get("resolved.device"),
        "capability": {
            key.removeprefix("resolved."): value
            for key, value in mlrun.data.params.items()
            if key.startswith("resolved.")
        },
    }


def _load_json_artifact(run_id: str, path: str) -> Any:
    import json

    import mlflow

    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}"))
