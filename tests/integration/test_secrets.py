"""Credentials come from the environment only and never reach MLflow params, tags or artifacts."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.registry import store

from .conftest import overrides

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-planted-7f4e9a"


def test_planted_secrets_never_reach_the_tracking_store(in_workspace: Path, monkeypatch, tmp_path: Path):
    for var in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN", "DATABASE_URL"):
        monkeypatch.setenv(var, SECRET if var != "DATABASE_URL" else f"postgresql://tunepipe:{SECRET}@db/mlflow")
    name = "secrets-test"
    outcome = retrain(None, overrides(f"registry.model_name={name}"), force=True)
    version = outcome["registered"]["version"]

    client = store.connect(load_config(None, overrides()))
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    texts = [repr(run.data.params), repr(run.data.tags), repr(mv.tags), repr(client.get_registered_model(name).tags)]
    local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, dst_path=str(tmp_path / "artifacts")))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files)
    for path in files:
        texts.append(path.read_bytes().decode("latin-1"))
    leaks = [i for i, text in enumerate(texts) if SECRET in text]
    assert not leaks, f"secret found in {len(leaks)} places"
