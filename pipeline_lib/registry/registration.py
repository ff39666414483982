"""Registering a run's model: the MLflow run (params, per-epoch and test metrics, artifacts, reports, the pyfunc),
the model version with its lineage tags, and the alias move, checked against the champion the gates compared with.

The alias moves last (the commit point). Until it has, the journal in the run directory records what the attempt
created, so a failure, or a tracking server that goes away, is rolled back: at once, by the next retry, or by the
next registration once the server answers again (`journal.settle`, `journal.sweep`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json
from pipeline_lib.registry import promotion, store
from pipeline_lib.registry.journal import STATUS_TAG, Journal, settle, sweep
from pipeline_lib.registry.libraries import library_params
from pipeline_lib.registry.lineage import seen_keys
from pipeline_lib.registry.retries import is_unreachable
from pipeline_lib.report.build import write_reports
from pipeline_lib.runtime.pyfunc import pyfunc_log_kwargs
from pipeline_lib.task_types.metrics import flat_metrics


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (lists kept as their JSON-ish string)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), child))
        return out
    return {prefix: value}


def _open_run(client: Any, cfg: PipelineConfig, journal: Journal, tags: dict[str, str]) -> str:
    """A new MLflow run, journaled, that reads FAILED until the registration completes: a server that dies
    mid-way leaves no run claiming to be RUNNING or FINISHED."""
    exp_id = store.experiment_id(cfg, client)
    journal.at("run creation")
    name = f"{cfg.registry.model_name}-{int(time.time())}"
    run_id = client.create_run(exp_id, run_name=name, tags={**tags, STATUS_TAG: "incomplete"}).info.run_id
    journal.at("logging params, metrics and artifacts", run_id=run_id)
    client.set_terminated(run_id, "FAILED")
    return run_id


def drift_metrics(run: RunDir) -> dict[str, float]:
    """`drift.<feature>`: each drift figure against the champion the run was compared with (none: no metrics)."""
    report = read_json(run.drift) if run.drift.is_file() else {}
    return {f"drift.{f['name']}": f["figure"] for f in report.get("features", [])}


def _write_seen_keys(run: RunDir) -> Path:
    run.seen_keys.parent.mkdir(parents=True, exist_ok=True)
    seen_keys(run).to_parquet(run.seen_keys, index=False)
    return run.seen_keys


def _log_run(client: Any, cfg: PipelineConfig, run: RunDir, run_id: str) -> str:
    """Params, per-epoch and test metrics, artifacts and the pyfunc model into MLflow run `run_id`; the model URI."""
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.models import Model

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
    } | library_params()  # what `tunepipe reproduce` compares with its own environment
    now = int(time.time() * 1000)
    steps = [
        (round(row["epoch"] * 1000), {k: v for k, v in row.items() if k != "epoch"})
        for row in read_json(run.train_history)
    ]
    final = (
        {f"test.{k}": v for k, v in metrics.items()}
        | {
            "onnx.max_abs_logit_diff": export_summary["max_abs_logit_diff"],
            "onnx.agreement": export_summary["agreement"],
            "onnx.size_mb": export_summary["size_mb"],
            "train.seconds": train_summary["seconds"],
            "train.samples_per_second": train_summary["train_samples_per_second"],
        }
        | drift_metrics(run)
    )
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
        (_write_seen_keys(run), "data"),  # the gates of later challengers leave these rows out
        (run.profile, "data"),  # what the next run's drift check compares with
        (run.drift, "validation"),
    ]:
        if path.is_file():
            client.log_artifact(run_id, str(path), folder)
    # the logged model belongs to the run's experiment, so its files go under that experiment's artifact location
    # (the store), not the default experiment's ./mlruns in the working directory
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    info = Model.log(None, name="model", flavor=mlflow.pyfunc, run_id=run_id, **pyfunc_log_kwargs(run.onnx_dir))
    return info.model_uri


def decide_alias(client: Any, cfg: PipelineConfig, gates: dict[str, Any]) -> tuple[bool, str, Any]:
    """Promote only when every gate passed and the champion is still the one the gates compared with."""
    current = store.alias_version(client, cfg.registry.model_name, store.CHAMPION)
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
    tags = {**tags, "run_id": run_id, store.DIGEST_TAG: store.folder_digest(run.onnx_dir)}
    number = str(mlflow.register_model(model_uri, name, tags=tags).version)
    journal.at("reports", version=number)
    promoted, reason, current = decide_alias(client, cfg, gates)
    previous = str(current.version) if current is not None else None
    client.set_model_version_tag(name, number, "promotion", reason)
    alias = store.CHAMPION if promoted else store.CHALLENGER
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
            promoted, alias, reason = False, store.CHALLENGER, str(exc)
            client.set_model_version_tag(name, number, "promotion", reason)
    promotion.record(
        client, name, number, action="refuse", previous=previous, reason=reason, gates=gates, run_id=run_id
    )
    _finish(client, journal, alias, promoted, previous, reason)
    client.set_registered_model_alias(name, alias, number)
    return journal.outcome


def attempt(
    cfg: PipelineConfig, run: RunDir, journal: Journal, gates: dict[str, Any], tags: dict[str, str], doing: list[str]
) -> dict[str, Any]:
    """One registration attempt: settle what interrupted ones left behind, then register afresh (or not at all,
    when this run's interrupted attempt turns out to have committed). Returns the outcome."""
    client = store.connect(cfg)
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
