"""A real local MLflow store with one registered model and a few bare versions, for registry-level tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.registry import store


def store_with_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, count: int
) -> tuple[PipelineConfig, Any, list[str]]:
    """`count` versions of `name`, each from its own run; returns the config, the client and the run ids."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None, [f"paths.store={tmp_path / 'store'}", f"registry.model_name={name}"])
    client = store.connect(cfg)
    exp = store.experiment_id(cfg, client)
    client.create_registered_model(name)
    runs = [client.create_run(exp).info for _ in range(count)]
    for run in runs:
        client.create_model_version(name, f"{run.artifact_uri}/model", run.run_id)
    return cfg, client, [run.run_id for run in runs]
