"""A whole run against a real `mlflow server` (sqlite backend, local artifact root) as the tracking URI:
the run, the registered version, its lineage and its ONNX artifacts all go through the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.registry import store
from pipeline_lib.registry.fast_lookup import local_model

from .conftest import cli_sets, overrides
from .servers import mlflow_server

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(root, root / "server.log") as url:
        yield url, root


def test_whole_run_against_mlflow_server(server: tuple[str, Path], in_workspace: Path, monkeypatch):
    url, root = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # restored afterwards (mlflow.set_tracking_uri exports it)
    sets = overrides(f"registry.tracking_uri={url}")

    outcome = retrain(None, sets)

    reg = outcome["registered"]
    assert reg["version"] == "1" and reg["promoted"] and reg["alias"] == "champion"
    client = store.connect(load_config(None, sets))
    assert client.tracking_uri == url
    version = store.alias_version(client, NAME, "champion")
    assert str(version.version) == "1" and version.run_id == reg["run_id"]
    # everything lives on the server: its sqlite store and its artifact root; no local store was made
    assert (root / "mlflow.db").is_file() and not (in_workspace / ".tunepipe" / "mlflow.db").exists()
    stored = {p.name for p in (root / "artifacts").rglob("*") if p.is_file()}
    assert {"model.onnx", "metrics.json", "verdicts.json", "config.yaml"} <= stored
    # lineage and prediction read back through the server
    remote = cli_sets(f"registry.tracking_uri={url}")
    result = CliRunner().invoke(app, ["lineage", f"{NAME}@champion", "--json", *remote])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["run_id"] == reg["run_id"] and info["data"]["md5"] and info["gates"]["passed"] is True
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn"]
    result = CliRunner().invoke(app, ["predict", "--model", f"{NAME}@champion", *texts, *remote])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["model"] == f"{NAME}/1"
    # the alias resolves through the server's REST API alone, and the verified copy is what predict used
    found = local_model(load_config(None, sets), f"{NAME}@champion")
    assert (found.looked_up, found.registered.version, found.registered.run_id) == ("rest", "1", reg["run_id"])
    assert found.registered.digest == store.folder_digest(found.folder) == version.tags[store.DIGEST_TAG]
