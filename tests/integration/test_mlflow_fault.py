"""The MLflow server stops in the middle of a run: registration retries, then fails with one clear message,
leaving no half-registered version, no moved alias, no ledger record and no run claiming success; once the
server is back (same store, same port) the next run rolls the leftovers back and registers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.registry import ledger, store
from pipeline_lib.registry.journal import PENDING, STATUS_TAG

from .conftest import cli_sets, overrides
from .servers import child_env, free_port, mlflow_process, stop

pytestmark = pytest.mark.integration
NAME = "fault-test"


def stop_when_logging_starts(root: Path, known_run: str, proc: subprocess.Popen) -> threading.Thread:
    """Stop the server as soon as a new MLflow run's first artifact lands in its artifact root."""

    def watch() -> None:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.parts[-3] != known_run for p in (root / "artifacts").glob("*/*/artifacts/config.yaml")):
                stop(proc)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_server_stopped_mid_registration_leaves_nothing_then_rerun_registers(in_workspace: Path, tmp_path: Path):
    root, port = tmp_path / "mlflow", free_port()
    url = f"http://127.0.0.1:{port}"
    extra = [f"registry.tracking_uri={url}", f"registry.model_name={NAME}", "paths.artifacts=fault-runs"]
    extra += ["registry.retries=2", "registry.retry_wait_s=0.5", "registry.http_retries=1"]
    sets = overrides(*extra)
    env = {k: v for k, v in child_env().items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    command = [sys.executable, "-m", "flows.cli", "run", "--force", *cli_sets(*extra)]

    with mlflow_process(root, tmp_path / "server-1.log", port) as proc:
        first = retrain(None, sets)["registered"]
        assert (first["version"], first["alias"]) == ("1", "champion")
        watcher = stop_when_logging_starts(root, first["run_id"], proc)
        failed = subprocess.run(command, cwd=in_workspace, env=env, capture_output=True, text=True, timeout=500)
        watcher.join(timeout=30)
        assert proc.poll() is not None, "the server was never stopped: the run did not reach registration"

    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert f"MLflow tracking server at {url} unreachable after 3 attempts during" in output, output
    assert "nothing registered, alias unmoved" in output, output
    journals = list((in_workspace / "fault-runs").glob(f"runs/*/register/{PENDING}"))
    assert len(journals) == 1  # the interrupted attempt, kept for the next registration to settle

    with mlflow_process(root, tmp_path / "server-2.log", port):
        client = store.connect(load_config(None, sets))
        assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]
        assert str(store.alias_version(client, NAME, "champion").version) == "1"
        assert store.alias_version(client, NAME, "challenger") is None
        records = ledger.read(client, NAME)
        assert [(r["action"], r["version"], r["run_id"]) for r in records] == [("promote", "1", first["run_id"])]
        experiment = client.get_experiment_by_name(load_config(None, sets).registry.experiment)
        runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
        others = [r for run_id, r in runs.items() if run_id != first["run_id"]]
        assert others, "the server stopped before the second run was created: the fault came too early"
        assert [(r.info.status, r.data.tags[STATUS_TAG]) for r in others] == [("FAILED", "incomplete")]

        second = retrain(None, sets, force=True)["registered"]

        assert second["version"] == "2" and second["run_id"] not in runs
        assert sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'")) == ["1", "2"]
        abandoned = client.get_run(others[0].info.run_id)
        assert abandoned.info.status == "FAILED" and abandoned.data.tags[STATUS_TAG].startswith("rolled back")
        assert client.get_run(second["run_id"]).info.status == "FINISHED"
        assert not list((in_workspace / "fault-runs").glob(f"runs/*/register/{PENDING}"))
        assert all(r["run_id"] != others[0].info.run_id for r in ledger.read(client, NAME))
