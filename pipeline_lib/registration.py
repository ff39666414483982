"""Step 7, register: log the run to MLflow, register the ONNX pyfunc with its lineage, move an alias.

The alias move is the last act and is checked against the champion the gates compared with, so a
concurrent promotion is never overwritten; any failure after the version exists deletes it again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib import promotion, registry
from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.metrics import flat_metrics
from pipeline_lib.report import write_reports
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


def _log_run(cfg: PipelineConfig, run: RunDir, tags: dict[str, str]) -> tuple[str, str]:
    """One MLflow run with params, per-epoch and test metrics, artifacts and the pyfunc model."""
    import mlflow

    from pipeline_lib.inference import pyfunc_log_kwargs

    client = registry.connect(cfg)
    exp_id = registry.experiment_id(cfg, client)
    metrics = flat_metrics(read_json(run.metrics))
    export_summary = read_json(run.export_summary)
    train_summary = read_json(run.train_summary)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{cfg.registry.model_name}-{int(time.time())}") as active:
        mlflow.set_tags(tags)
        mlflow.log_params({k: str(v)[:500] for k, v in flatten("", cfg.model_dump(mode="json")).items()})
        mlflow.log_params(
            {
                "resolved.precision": train_summary["precision"],
                "resolved.device": train_summary["device"],
                "resolved.device_name": train_summary.get("capability", {}).get("device_name"),
                "resolved.bf16_hardware": train_summary.get("capability", {}).get("bf16"),
                "resolved.cpu_bf16_flags": ",".join(train_summary.get("capability", {}).get("cpu_flags", [])) or "-",
                "resolved.world_size": train_summary.get("world_size", 1),
                "resolved.trainable": (train_summary.get("trainable") or {}).get("strategy", "none"),
            }
        )
        for row in read_json(run.train_history):
            step = round(row["epoch"] * 1000)
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=step)
        mlflow.log_metrics({f"test.{k}": v for k, v in metrics.items()})
        mlflow.log_metrics(
            {
                "onnx.max_abs_logit_diff": export_summary["max_abs_logit_diff"],
                "onnx.agreement": export_summary["agreement"],
                "onnx.size_mb": export_summary["size_mb"],
                "train.seconds": train_summary["seconds"],
                "train.samples_per_second": train_summary["train_samples_per_second"],
            }
        )
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
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
            mlflow.log_artifact(str(path), folder)
        info = mlflow.pyfunc.log_model(name="model", **pyfunc_log_kwargs(run.onnx_dir))
        return active.info.run_id, info.model_uri


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
            f"champion changed from v{compared} to v{current_version} while this run was gated",
            current,
        )
    return True, "every gate passed", current


def register(cfg: PipelineConfig, run: RunDir) -> RegisterResult:
    """Register the exported model with full lineage; alias `champion` if it earned it, else `challenger`."""
    import mlflow

    start = time.perf_counter()
    gates = read_json(run.gate_verdicts)
    tags = lineage_tags(cfg, run, gates)
    run_id, model_uri = _log_run(cfg, run, tags)
    client = registry.connect(cfg)
    version = mlflow.register_model(model_uri, cfg.registry.model_name, tags={**tags, "run_id": run_id})
    try:
        promoted, reason, current = decide_alias(client, cfg, gates)
        previous = str(current.version) if current is not None else None
        alias = registry.CHAMPION if promoted else registry.CHALLENGER
        name, number = cfg.registry.model_name, str(version.version)
        client.set_model_version_tag(name, number, "promotion", reason)
        reports = write_reports(
            cfg, run, name=name, version=number, alias=alias, reason=reason, run_id=run_id, tags=tags
        )
        for path in reports.values():
            client.log_artifact(run_id, str(path), "report")
        if promoted:  # the champion moves last, checked against the one the gates saw, and is ledgered
            try:
                promotion.move_champion(
                    client, name, number, expected=previous, action="promote", reason=reason, gates=gates, run_id=run_id
                )
            except promotion.PromotionError as exc:  # another run promoted meanwhile: this one stays a challenger
                promoted, alias, reason = False, registry.CHALLENGER, str(exc)
                client.set_model_version_tag(name, number, "promotion", reason)
        if not promoted:
            replaced = registry.alias_version(client, name, alias)
            client.set_registered_model_alias(name, alias, number)
            try:
                promotion.record(
                    client, name, number, action="refuse", previous=previous, reason=reason, gates=gates, run_id=run_id
                )
            except BaseException:
                registry.restore_alias(client, name, alias, replaced)
                raise
    except BaseException:
        registry.delete_version_quietly(client, cfg.registry.model_name, version.version)
        raise
    result = RegisterResult(
        name=cfg.registry.model_name,
        version=str(version.version),
        alias=alias,
        promoted=promoted,
        previous_champion=previous,
        reason=reason,
        run_id=run_id,
        seconds=round(time.perf_counter() - start, 3),
    )
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
