"""Where a registered model came from: the lineage tags written on its version (code, data, config, gates) and
everything `tunepipe lineage` reads back (run, metrics, gates, runtime table, precision)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.keys import KEY_VERSION, text_digests
from pipeline_lib.data.versions import data_fingerprint, git_state
from pipeline_lib.layout import RunDir, read_json
from pipeline_lib.registry import store
from pipeline_lib.registry.libraries import recorded_libraries


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
    validation = read_json(run.validation_report) if run.validation_report.is_file() else {}
    tags["data.split_method"] = str(validation.get("split_method") or "unknown")
    checked = validation.get("label_issues") or {}
    if checked.get("status") == "checked":  # the label check: what it flagged and what `drop` removed before training
        tags["data.label_issues.flagged"] = str(checked.get("flagged", 0))
        tags["data.label_issues.dropped"] = str(checked.get("dropped", 0))
        tags["data.label_issues.checked"] = (
            f"{checked.get('checked', 0)} of {checked.get('checked', 0) + checked.get('unchecked', 0)}"
        )
        if checked.get("dropped_keys_digest"):
            tags["data.label_issues.dropped_keys"] = str(checked["dropped_keys_digest"])
    tags["data.key"] = KEY_VERSION
    return tags | tuning_tags(cfg) | distill_tags(run)


def distill_tags(run: RunDir) -> dict[str, str]:
    """`distill.*` tags of a distilled run: the teacher (reference, registered name and version, graph digest), the
    loss's alpha and temperature, and how many unlabeled texts the teacher labelled."""
    summary = read_json(run.train_summary) if run.train_summary.is_file() else {}
    teacher = summary.get("distill")
    if not teacher:
        return {}
    named = f"{teacher['name']}/{teacher['version']}" if teacher.get("name") else teacher["reference"]
    tags = {
        "distill.teacher": named,
        "distill.teacher_digest": str(teacher["digest"]),
        "distill.alpha": str(teacher["alpha"]),
        "distill.temperature": str(teacher["temperature"]),
    }
    if teacher.get("unlabeled"):  # extra texts the teacher alone labelled
        tags["distill.unlabeled_texts"] = str(teacher["unlabeled"]["used"])
    return tags


def tuning_tags(cfg: PipelineConfig) -> dict[str, str]:
    """`tune.*` tags naming the study and trial whose values the config trains with (a tuned overlay), if any."""
    origin = cfg.tune.origin
    if origin is None:
        return {}
    return {f"tune.{key}": str(value) for key, value in origin.model_dump(mode="json").items()}


def seen_keys(run: RunDir) -> pd.DataFrame:
    """Key digests of the rows a model trained and selected on (its train and validation splits): logged with the
    version, so that a later challenger's test rows can be checked against them without storing any text."""
    frames = [
        pd.DataFrame(
            {"key": text_digests(pd.read_parquet(run.split_file(split), columns=["text"])["text"]), "split": split}
        )
        for split in ("train", "validation")
    ]
    return pd.concat(frames, ignore_index=True)


PROFILE_ARTIFACT = "data/profile.json"  # the training split's profile, logged with every version


def champion_profile(cfg: PipelineConfig) -> tuple[str, dict[str, Any]] | None:
    """The current champion's version and the profile of the training split it learned (None: no champion, or one
    registered before profiles were logged). Read without MLflow once the artifact is cached locally."""
    import json

    from pipeline_lib.registry.fast_lookup import aliased

    found = aliased(cfg)
    if found is None or not found.run_id:
        return None
    path = store.run_artifact(cfg, found.run_id, PROFILE_ARTIFACT)
    return None if path is None else (found.version, json.loads(path.read_text(encoding="utf-8")))


def lineage(cfg: PipelineConfig, ref: str) -> dict[str, Any]:
    """Everything known about a registered version: run, metrics, gates, code, data and config."""
    import mlflow

    client = store.connect(cfg)
    version = store.resolve(client, store.ModelRef.parse(ref))
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
        "split_method": tags.get("data.split_method"),
        "config_hash": tags.get("config.hash"),
        "config": yaml.safe_load(config_text),
        "runtime": runtime_table(_load_json_artifact(version.run_id, "export/summary.json").get("runtime")),
        "drift": _optional_json_artifact(version.run_id, "validation/drift.json"),
        "precision": mlrun.data.params.get("resolved.precision"),
        "device": mlrun.data.params.get("resolved.device"),
        "capability": {
            key.removeprefix("resolved."): value
            for key, value in mlrun.data.params.items()
            if key.startswith("resolved.")
        },
        "libraries": recorded_libraries(mlrun.data.params),
        "tuned": _tuned(tags),
        "distill": {k.removeprefix("distill."): v for k, v in tags.items() if k.startswith("distill.")} or None,
    }


UNTIMED = "not timed (no reason recorded)"  # a table written before rows said why


def runtime_table(table: dict[str, Any] | None) -> dict[str, Any] | None:
    """The export step's serving-runtime table, each row saying whether it was timed: a row without timings (a
    candidate over the metric budget or the agreement floor is never timed, it cannot be chosen) gets `untimed`, the
    reason from the table's `not_timed`; a row timed on the short probe only gets `probe_only`, the same way.
    Tables of every age are read, including those registered before rows said why."""
    if not table:
        return table
    not_timed = table.get("not_timed") or {}
    rows = []
    for row in table.get("candidates") or []:
        row = dict(row)
        if "p50_ms_batch1" not in row:
            row.setdefault("untimed", not_timed.get(row.get("runtime"), UNTIMED))
        elif row.get("timed") == "probe" and row.get("runtime") in not_timed:
            row.setdefault("probe_only", not_timed[row["runtime"]])
        rows.append(row)
    return {**table, "candidates": rows}


def runtime_lines(table: dict[str, Any]) -> list[str]:
    """`tunepipe lineage`'s lines for the runtime table: the chosen runtime, then one line per candidate and
    reference (latency and throughput, or why it was not timed), then what was not timed and is not a row."""
    table = runtime_table(table) or {}
    lines = [f"serving runtime: {table.get('chosen')} (chosen by measurement)"]
    shown = set()
    for row in [*table.get("candidates", []), *table.get("references", [])]:
        name = str(row.get("runtime"))
        shown.add(name)
        verdict = {True: "eligible", False: "over the metric budget or the agreement floor"}.get(
            row.get("eligible"), "reference"
        )
        if "p50_ms_batch1" in row:
            probe = f"; timed on the probe only: {row['probe_only']}" if row.get("probe_only") else ""
            lines.append(
                f"  {name:<26} {row['p50_ms_batch1']:>9.2f} ms @1  "
                f"{row.get('samples_per_s_batch32', float('nan')):>8.1f}/s @32  {verdict}{probe}"
            )
        else:
            lines.append(f"  {name:<26} not timed: {row.get('untimed', UNTIMED)}")
    lines += [f"  {name:<26} not timed: {why}" for name, why in table.get("not_timed", {}).items() if name not in shown]
    return lines


def _optional_json_artifact(run_id: str, path: str) -> Any:
    """An artifact a version registered before it existed does not have (None then)."""
    try:
        return _load_json_artifact(run_id, path)
    except Exception as exc:
        if store.is_missing(exc) or isinstance(exc, OSError):
            return None
        raise


def _tuned(tags: dict[str, str]) -> dict[str, Any] | None:
    """The study and trial a tuned model's values come from (`tuning_tags`), None for an untuned one."""
    found = {key.removeprefix("tune."): value for key, value in tags.items() if key.startswith("tune.")}
    if "study" not in found:
        return None
    for key, kind in (("trial", int), ("value", float), ("finished_trials", int)):
        if key in found:
            found[key] = kind(found[key])
    return found


def _load_json_artifact(run_id: str, path: str) -> Any:
    import json

    import mlflow

    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}"))
