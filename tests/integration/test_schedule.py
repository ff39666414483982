"""Scheduled retraining on a real `prefect server start`: `tunepipe schedule` serves deployment
retrain/<name>; a trigger trains and registers; a second trigger with the same data is skipped with its
reason; after `tunepipe data add` the next trigger retrains and registers a new version. And the team path:
prefect.yaml deploys to a work pool built from infra/work-pool-template.json, and a worker runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET, file_md5
from pipeline_lib.registry import store

from .conftest import FAST_RUN
from .repos import sh, versioned_project
from .servers import BIN, child, child_env, prefect_server

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "retrain/it-weekly"
SETS = ["data.path=data/sample.csv", *FAST_RUN]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project whose dataset `sample` (30 rows per label) is versioned with a local remote."""
    root = tmp_path_factory.mktemp("scheduled")
    (root / "data").mkdir()
    pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(30).to_csv(root / "data/sample.csv", index=False)
    (root / ".gitignore").write_text(".tunepipe/\nartifacts/\n")
    versioned_project(root, "data/sample.csv")
    return root


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-server-home")
    with prefect_server(home, home / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def served(api: str, workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tunepipe schedule --cron ...` running in the workspace until the module's tests are done."""
    home = tmp_path_factory.mktemp("prefect-client-home")
    env = child_env(PREFECT_API_URL=api, PREFECT_HOME=str(home), PREFECT_RUNNER_POLL_FREQUENCY="2")
    sets = [arg for item in SETS for arg in ("--set", item)]
    args = [f"{BIN}/tunepipe", "schedule", "--cron", "0 3 * * 1", "--name", DEPLOYMENT.split("/")[1], *sets]
    log = workspace.parent / f"{workspace.name}-serve.log"
    with child(args, log, env, cwd=workspace) as proc:
        _wait_for_deployment(api, proc, log)
        yield api


def _client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        return get_client(sync_client=True)


def _wait_for_deployment(api: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with _client(api) as client:
            try:
                client.read_deployment_by_name(DEPLOYMENT)
                return
            except Exception:
                time.sleep(1)
    raise TimeoutError(f"{DEPLOYMENT} never appeared:\n{log.read_text()[-3000:]}")


def trigger(api: str) -> tuple[str, str]:
    """Run the deployment now and wait for it; returns (final state name, the flow run's log text). Logs reach
    the API in batches after the run ends, so they are read until the engine's closing line arrives."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        flow_run = run_deployment(DEPLOYMENT, timeout=420, poll_interval=2)
    flow_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
    deadline = time.monotonic() + 60
    while True:
        with _client(api) as client:
            entries = client.read_logs(log_filter=flow_filter, limit=200)
        closed = any(e.task_run_id is None and e.message.startswith("Finished in state") for e in entries)
        if closed or time.monotonic() > deadline:
            return flow_run.state.name, "\n".join(entry.message for entry in entries)
        time.sleep(1)


def registry_versions(workspace: Path) -> dict[str, dict[str, str]]:
    uri = f"sqlite:///{workspace / '.tunepipe' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:  # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: undo it
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = store.connect(load_config(None, [*SETS, f"registry.tracking_uri={uri}"]))
        return {str(v.version): v.tags for v in client.search_model_versions(f"name='{NAME}'")}


def test_deployment_is_served_with_its_cron_schedule(served: str):
    with _client(served) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 1"]
    assert deployment.parameters["overrides"] == SETS and deployment.parameters["force"] is False


def test_trigger_skip_then_retrain_after_data_add(served: str, workspace: Path):
    state, logs = trigger(served)
    assert state == "Completed", logs
    assert "[register]" in logs and "no champion yet" in logs
    versions = registry_versions(workspace)
    assert list(versions) == ["1"]
    assert versions["1"]["data.md5"] == file_md5(workspace / "data/sample.csv")

    state, logs = trigger(served)
    assert state == "Completed", logs
    assert "skipped: nothing changed" in logs and "v1 is the champion" in logs
    assert "[validate]" not in logs and "[train]" not in logs
    assert list(registry_versions(workspace)) == ["1"]

    new_rows = pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).nth(range(30, 33))
    new_rows.to_csv(workspace / "incoming.csv", index=False)
    added = sh(workspace, f"{BIN}/tunepipe", "data", "add", "incoming.csv", "--dataset", "sample", "--set", SETS[0])
    new_md5 = file_md5(workspace / "data/sample.csv")
    assert f"new md5 {new_md5}" in added

    state, logs = trigger(served)
    assert state == "Completed", logs
    assert "data changed" in logs and "[train] ran" in logs and "[register]" in logs
    versions = registry_versions(workspace)
    assert sorted(versions) == ["1", "2"]
    assert versions["2"]["data.md5"] == new_md5 and versions["2"]["data.dvc_md5"] == new_md5


@pytest.fixture(scope="module")
def team_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with the project's code, prefect.yaml and a DVC-versioned slice on a local remote,
    as the team's repository would be (the worker clones it)."""
    root = tmp_path_factory.mktemp("team-repo")
    for folder in ("flows", "tasks", "pipeline_lib", "configs", "infra"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", root)
    (root / "data").mkdir()
    sample = pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(30)
    sample.to_csv(root / "data/financial_sentiment.csv", index=False)
    (root / ".gitignore").write_text(".tunepipe/\nartifacts/\n")
    versioned_project(root, "data/financial_sentiment.csv", "team", "-b", "main")
    return root


def test_prefect_yaml_deploys_to_the_work_pool_and_a_worker_runs_it(api: str, team_repo: Path, tmp_path: Path):
    env = child_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "home"), TUNEPIPE_GIT_URL=str(team_repo))
    template = team_repo / "infra" / "work-pool-template.json"

    def prefect(*args: str, cwd: Path = team_repo, **extra: str) -> str:
        done = subprocess.run([f"{BIN}/prefect", *args], cwd=cwd, env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    prefect("work-pool", "create", "tunepipe-process", "--type", "process", "--base-job-template", str(template))
    prefect("--no-prompt", "deploy", "--name", "weekly", "--name", "on-data-change")  # retrain-gpu needs its own pool
    with _client(api) as client:
        weekly = client.read_deployment_by_name("retrain/weekly")
        assert weekly.work_pool_name == "tunepipe-process"
        assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 1"]
    params = '{"overrides": ' + json.dumps(FAST_RUN) + "}"
    prefect("deployment", "run", "retrain/on-data-change", "--params", params)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    worker = ["worker", "start", "--pool", "tunepipe-process", "--run-once"]
    prefect(*worker, cwd=tmp_path, MLFLOW_TRACKING_URI=uri, PREFECT_WORKER_QUERY_SECONDS="2")

    with _client(api) as client:
        deployment = client.read_deployment_by_name("retrain/on-data-change")
        runs = client.read_flow_runs(deployment_filter=_deployment_filter(deployment.id))
    assert [run.state.name for run in runs] == ["Completed"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = store.connect(load_config(None, [f"registry.tracking_uri={uri}"]))
        champion = store.alias_version(client, NAME, "champion")
    assert str(champion.version) == "1"
    assert champion.tags["data.dvc_md5"] == file_md5(team_repo / "data/financial_sentiment.csv")


def _deployment_filter(deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
