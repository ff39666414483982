"""Team mode on real servers: the stack of infra/docker-compose.yml (PostgreSQL, an MLflow server on it with
proxied artifacts, a Prefect server on it, the process work pool and one worker), run by `team.py` from the
compose file's own settings.

- The local stack is the compose stack: the settings are rendered from the compose file, every compose value is
  translated by a rule, and the running processes carry exactly the rendered commands and environment.
- `prefect deploy` of prefect.yaml, then `prefect deployment run` of retrain/weekly and retrain/on-data-change at
  once: the worker clones the repository, pulls the DVC data, trains and registers in the PostgreSQL-backed
  registry, one run after the other, so there is one champion and the ledger chains; the artifacts live behind
  the MLflow server, and a second directory that has only the URLs predicts and reads the lineage through it.
- PostgreSQL stopped during a registration: bounded retries, a clean failure, nothing half-registered; once it
  is back, the next run rolls the leftovers back and registers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.retrain import retrain
from infra import team_env
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import file_md5
from pipeline_lib.registry import ledger, store
from pipeline_lib.registry.journal import PENDING, STATUS_TAG
from pipeline_lib.registry.promotion import CHAMPION_ACTIONS

from .conftest import FAST_RUN, PRIVATE_CACHE, cli_sets, overrides
from .servers import BIN, child_env
from .team import REPO, TeamStack, prefect_client, team_stack
from .test_schedule import team_repo  # noqa: F401  (a fixture: the team's git + DVC repository the worker clones)

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
NO_POSTGRES = "PostgreSQL server programs (initdb, postgres, pg_ctl, psql) not on PATH nor in /usr/lib/postgresql/*/bin"


# --- one place: the compose file ------------------------------------------------------------------------------

PORTS = {"postgres": 15432, "mlflow": 15000, "prefect-server": 14200}


def test_the_local_stack_is_the_compose_stack_with_local_hosts_ports_and_folders():
    local = team_env.Local(Path("/stack"), REPO, PORTS)
    services = team_env.render(local, {"TUNEPIPE_GIT_URL": "/srv/tunepipe.git"})
    spec = team_env.compose()["services"]

    assert team_env.unmapped(services) == []
    for name, service in services.items():
        compose_env = set(spec[name].get("environment") or {})
        assert set(service.env) == (compose_env - team_env.S3_CLIENT_ENV) | set(local.additions(name)), name
        compose_args = [arg for cmd in team_env.commands(spec[name]["command"]) for arg in cmd]
        assert len([arg for cmd in service.commands for arg in cmd]) == len(compose_args), name
    db = "postgresql://tunepipe:change-me-postgres@127.0.0.1:15432"
    assert services["mlflow"].server == [
        "mlflow",
        "server",
        f"--backend-store-uri={db}/mlflow",
        "--serve-artifacts",
        "--artifacts-destination=/stack/mlflow-artifacts",
        "--host=127.0.0.1",
        "--port=15000",
        "--allowed-hosts=*",
    ]
    server = services["prefect-server"].env
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"] == db.replace("postgresql", "postgresql+asyncpg") + "/prefect"
    assert server["PREFECT_SERVER_API_HOST"] == "127.0.0.1" and server["PREFECT_SERVER_API_PORT"] == "14200"
    assert server["PREFECT_UI_API_URL"] == "http://127.0.0.1:14200/api"
    worker = services["prefect-worker"]
    assert worker.env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert worker.env["PREFECT_API_URL"] == "http://127.0.0.1:14200/api"
    assert worker.env["TUNEPIPE_GIT_URL"] == "/srv/tunepipe.git" and worker.env["XDG_CACHE_HOME"] == "/stack/cache"
    pool = ["--pool", "tunepipe-process", "--type", "process"]
    template = ["--base-job-template", f"{REPO}/infra/work-pool-template.json"]
    assert worker.commands == [
        ["prefect", "work-pool", "create", "tunepipe-process", "--type", "process", *template, "--overwrite"],
        ["prefect", "worker", "start", *pool, "--limit", "1"],
    ]
    postgres = team_env.postgres({})
    assert (postgres.user, postgres.password) == ("tunepipe", "change-me-postgres")
    assert postgres.databases() == ["mlflow", "prefect", "optuna"]  # POSTGRES_DB, and what postgres-init.sql creates


def test_a_compose_value_no_rule_translates_is_reported():
    spec = team_env.compose()
    spec["services"]["prefect-worker"]["environment"]["TUNEPIPE_CACHE"] = "http://minio:9000/cache"
    spec["services"]["mlflow"]["command"].append("--default-artifact-root=s3://other/")
    local = team_env.Local(Path("/stack"), REPO, PORTS, spec=spec)
    assert team_env.unmapped(team_env.render(local, {})) == [
        "prefect-worker env TUNEPIPE_CACHE: http://minio:9000/cache",
        f"mlflow command: {' '.join(team_env.render(local, {})['mlflow'].server)}",
    ]


def test_compose_variables_have_defaults_and_an_example():
    text = team_env.COMPOSE.read_text()
    example = (team_env.INFRA / ".env.example").read_text()
    for name in set(re.findall(r"(?<!\$)\$\{(\w+)", text)):  # `$${...}` is the container shell's
        assert re.search(rf"^{name}=", example, re.M), f"{name} is read by docker-compose.yml but not in .env.example"
    assert (
        re.findall(r"(?<!\$)\$\{\w+\}", text) == []
    )  # each has a default (`${NAME:-...}`): the stack runs without .env
    assert team_env.interpolate("${A:-x}|${B-y}|${C}|$$C|$D", {"A": "", "B": "", "D": "d"}) == "x|||$C|d"


def test_team_up_starts_the_stack_in_the_background_and_team_down_stops_and_removes_it(tmp_path: Path):
    """`make team-up` / `make team-down` (python -m infra.team up|down)."""
    if team_env.postgres_bin() is None:
        pytest.skip(NO_POSTGRES)
    folder = tmp_path / "team"
    env = {k: v for k, v in child_env().items() if k != "TUNEPIPE_GIT_URL"}

    def team(command: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "infra.team", command, "--dir", str(folder)]
        return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)

    up = team("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", (folder / "env").read_text(), re.M))
        assert exports["TUNEPIPE_GIT_URL"] == str(REPO)  # the worker clones this checkout unless told otherwise
        assert f"export PREFECT_API_URL={exports['PREFECT_API_URL']}" in up.stdout
        health = [f"{exports['MLFLOW_TRACKING_URI']}/health", f"{exports['PREFECT_API_URL']}/health"]
        assert [urllib.request.urlopen(url, timeout=10).status for url in health] == [200, 200]
        assert team("up").stdout == up.stdout  # already up: says where, starts nothing
    finally:
        down = team("down")
    assert down.returncode == 0 and "team stack stopped" in down.stdout, down.stdout + down.stderr
    assert not folder.exists()
    for url in health:
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=5)


# --- the stack ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, team_repo: Path) -> Iterator[TeamStack]:  # noqa: F811
    if team_env.postgres_bin() is None:
        pytest.skip(NO_POSTGRES)
    root = tmp_path_factory.mktemp("team-stack")
    env = {"TUNEPIPE_GIT_URL": str(team_repo)}  # otherwise compose's defaults, whatever this shell exports
    with team_stack(root, env, mlflow_workers=1, worker_env={"PREFECT_WORKER_QUERY_SECONDS": "2"}) as team:
        yield team


def run_ok(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_for_flow_runs(stack: TeamStack, ids: list[str], timeout: float = 900) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with prefect_client(stack.prefect_url) as client:
            runs = [client.read_flow_run(flow_run_id) for flow_run_id in ids]
        if all(run.state.is_final() for run in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"flow runs not finished after {timeout}s:\n{stack.log('prefect-worker').read_text()[-4000:]}")


def flow_run_logs(stack: TeamStack, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with prefect_client(stack.prefect_url) as client:
        entries = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in entries)


@pytest.fixture(scope="module")
def two_runs(stack: TeamStack, team_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> list:  # noqa: F811
    """prefect.yaml deployed from the team repository, then retrain/weekly and retrain/on-data-change triggered at
    the same moment, both forced (so both train and register); the finished flow runs, in start order."""
    home = tmp_path_factory.mktemp("deployer-prefect-home")
    env = stack.client_env(PREFECT_HOME=str(home), TUNEPIPE_GIT_URL=str(team_repo))
    run_ok([f"{BIN}/prefect", "--no-prompt", "deploy", "--name", "weekly", "--name", "on-data-change"], team_repo, env)
    params = json.dumps({"overrides": [*FAST_RUN, *PRIVATE_CACHE], "force": True})  # the worker really trains
    triggers = [
        subprocess.Popen(
            [f"{BIN}/prefect", "deployment", "run", f"retrain/{name}", "--params", params],
            cwd=team_repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("weekly", "on-data-change")
    ]
    created = [re.search(r"UUID: ([0-9a-f-]{36})", trigger.communicate(timeout=120)[0]) for trigger in triggers]
    assert all(created), [trigger.args for trigger in triggers]
    ids = [match.group(1) for match in created]
    runs = wait_for_flow_runs(stack, ids)
    for run in runs:
        assert run.state.name == "Completed", f"{run.name}:\n{flow_run_logs(stack, run.id)[-4000:]}"
    return sorted(runs, key=lambda run: run.start_time)


def mlflow_client(stack: TeamStack):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)


def test_the_running_servers_carry_the_rendered_compose_settings(stack: TeamStack):
    for name, proc in stack.procs.items():
        service = stack.services[name]
        argv = Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0")[:-1]
        assert argv[1:] == [f"{BIN}/{service.server[0]}", *service.server[1:]], name  # argv[0]: the interpreter
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{proc.pid}/environ").read_text().split("\0") if e)
        assert service.env.items() <= environ.items(), name
    databases = {
        row[0]: row[1] for row in stack.sql("postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database")
    }
    assert databases["mlflow"] == databases["prefect"] == stack.settings.user
    assert stack.sql("mlflow", "SELECT count(*) FROM alembic_version") == [["1"]]  # MLflow's schema, migrated
    assert stack.sql("prefect", f"SELECT type FROM work_pool WHERE name = '{stack.pool}'") == [["process"]]


def test_deployment_runs_train_on_the_worker_and_register_in_postgres(
    stack: TeamStack,
    two_runs: list,
    team_repo: Path,  # noqa: F811
):
    client = mlflow_client(stack)
    versions = sorted(client.search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2"]
    stored = stack.sql("mlflow", f"SELECT version, run_id FROM model_versions WHERE name = '{NAME}' ORDER BY version")
    assert stored == [[v.version, v.run_id] for v in versions]  # the registry is the PostgreSQL database
    champion = client.get_model_version_by_alias(NAME, "champion")
    aliases = f"SELECT version FROM registered_model_aliases WHERE name = '{NAME}' AND alias = 'champion'"
    assert stack.sql("mlflow", aliases) == [[champion.version]]
    ids = ", ".join(f"'{run.id}'" for run in two_runs)
    ran = stack.sql("prefect", f"SELECT state_type FROM flow_run WHERE id IN ({ids})")
    assert ran == [["COMPLETED"], ["COMPLETED"]]
    data_md5 = file_md5(team_repo / "data" / "financial_sentiment.csv")
    for version in versions:
        assert version.tags["data.dvc_md5"] == data_md5  # the worker pulled the DVC version the repository names
        run = client.get_run(version.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri  # proxied, never a path
        on_server = stack.local.artifacts / run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
        assert {"config.yaml", "gates", "report"} <= {p.name for p in on_server.iterdir()}
    logs = flow_run_logs(stack, two_runs[0].id)
    assert "[train] ran" in logs and "[register]" in logs and f"{NAME} v1 -> @champion" in logs, logs[-3000:]


def test_two_runs_at_once_run_one_after_the_other_leaving_one_champion_and_a_chained_ledger(
    stack: TeamStack, two_runs: list, tmp_path: Path
):
    first, second = two_runs
    assert second.created < first.end_time  # both were waiting or running at once
    assert first.end_time <= second.start_time  # the worker took one at a time (compose: --limit 1)
    client = mlflow_client(stack)
    records = assert_ledger_chains(client)
    assert [r["version"] for r in records] == ["1", "2"] and records[0]["action"] == "promote"
    for record in records:  # each was gated against the champion of its moment: the other run's, for the second
        verdicts = client.download_artifacts(record["run_id"], "gates/verdicts.json", str(tmp_path))
        compared = (json.loads(Path(verdicts).read_text()).get("champion") or {}).get("version")
        assert compared == record["previous_champion"], record


def assert_ledger_chains(client) -> list[dict]:
    """One ledger record per registered version, in version order, each naming the champion before it; the
    `champion` alias where the ledger leaves it; each version's promotion tag is its record's reason."""
    records = ledger.read(client, NAME)
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{NAME}'")}
    assert [r["version"] for r in records] == sorted(versions, key=int)
    champion = None
    for record in records:
        assert record["previous_champion"] == champion, records
        version = versions[record["version"]]
        assert version.run_id == record["run_id"] and version.tags["promotion"] == record["reason"]
        if record["action"] in CHAMPION_ACTIONS:
            champion = record["version"]
    assert str(store.alias_version(client, NAME, "champion").version) == champion
    return records


def test_a_second_directory_with_only_the_urls_predicts_and_reads_lineage_through_the_server(
    stack: TeamStack, two_runs: list, tmp_path: Path
):
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    env = stack.client_env()
    log = stack.log("mlflow")
    served_before = len(log.read_text())
    text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn"
    commands = [
        [f"{BIN}/tunepipe", "predict", "--model", f"{NAME}@champion", text],
        [f"{BIN}/tunepipe", "lineage", f"{NAME}@champion", "--json"],
    ]
    procs = [
        subprocess.Popen(c, cwd=laptop, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    (predicted, err_p), (described, err_l) = (proc.communicate(timeout=300) for proc in procs)
    assert procs[0].returncode == 0 and procs[1].returncode == 0, err_p + err_l

    champion = mlflow_client(stack).get_model_version_by_alias(NAME, "champion")
    row = json.loads(predicted.strip().splitlines()[-1])
    assert row["model"] == f"{NAME}/{champion.version}" and row["label"] in {"positive", "negative", "neutral"}
    info = json.loads(described)
    assert info["run_id"] == champion.run_id and info["version"] == champion.version
    assert info["gates"]["passed"] is True and info["data"]["md5"] == champion.tags["data.md5"]
    # the graph came over HTTP from the server's artifact proxy; the laptop holds only that download
    requests = log.read_text()[served_before:]
    assert re.search(r'"GET /api/2\.0/mlflow-artifacts/artifacts/\S+/model\.onnx HTTP/1\.1" 200', requests), requests
    files = [p.relative_to(laptop) for p in laptop.rglob("*") if p.is_file()]
    cache = Path(".tunepipe", "models", NAME, f"v{champion.version}")
    assert files and all(p.parts[:4] == cache.parts for p in files), files


# --- PostgreSQL goes away mid-registration --------------------------------------------------------------------


def stop_when_logging_starts(stack: TeamStack, stopped: list[float]) -> threading.Thread:
    """Stop PostgreSQL as soon as a new MLflow run's first artifact reaches the server's artifact store."""
    known = {p.parts[-3] for p in stack.local.artifacts.glob("*/*/artifacts/config.yaml")}

    def watch() -> None:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and not stopped:
            if any(p.parts[-3] not in known for p in stack.local.artifacts.glob("*/*/artifacts/config.yaml")):
                stopped.append(time.monotonic())
                stack.postgres.stop()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def registry_state(client) -> tuple:
    versions = sorted(
        (str(v.version), v.run_id, v.tags.get("promotion")) for v in client.search_model_versions(f"name='{NAME}'")
    )
    aliases = client.get_registered_model(NAME).aliases
    return versions, aliases, ledger.read(client, NAME)


def test_postgres_stopped_mid_registration_fails_cleanly_then_a_rerun_registers(
    stack: TeamStack, two_runs: list, in_workspace: Path
):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    extra = [f"registry.tracking_uri={stack.mlflow_url}", "paths.artifacts=fault-runs", "registry.retries=2"]
    extra += ["registry.retry_wait_s=0.5", "registry.http_retries=1", "registry.http_timeout_s=5"]
    sets = overrides(*extra)
    client = store.connect(load_config(None, sets))
    before = registry_state(client)
    env = {k: v for k, v in child_env().items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    # a team member's `tunepipe run` against the team MLflow; with Prefect's ephemeral API of its own, since the
    # PostgreSQL about to stop holds the Prefect server's database too (what is under test here is the registry)
    command = [f"{BIN}/tunepipe", "run", "--force", *cli_sets(*extra)]

    stopped: list[float] = []
    watcher = stop_when_logging_starts(stack, stopped)
    failed = subprocess.run(command, cwd=in_workspace, env=env, capture_output=True, text=True, timeout=600)
    ended = time.monotonic()
    watcher.join(timeout=60)

    output = failed.stdout + failed.stderr
    assert stopped and not stack.postgres.running, f"PostgreSQL was never stopped: no registration began\n{output}"
    assert failed.returncode != 0, output
    assert f"MLflow tracking server at {stack.mlflow_url} unreachable after 3 attempts during" in output, output
    assert "nothing registered, alias unmoved" in output, output
    assert ended - stopped[0] < 60, f"{ended - stopped[0]:.0f}s from the outage to the failure"
    assert len(list((in_workspace / "fault-runs").glob(f"runs/*/register/{PENDING}"))) == 1

    stack.postgres.start()
    assert registry_state(client) == before  # no version, alias or ledger record came of it
    experiment = client.get_experiment_by_name(load_config(None, sets).registry.experiment)
    known = {v[1] for v in before[0]}
    leftovers = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id not in known]
    assert [(r.info.status, r.data.tags[STATUS_TAG]) for r in leftovers] == [("FAILED", "incomplete")]

    with temporary_settings({PREFECT_API_URL: stack.prefect_url}):  # the rerun goes through the team's Prefect
        rerun = retrain(None, sets, force=True)["registered"]

    assert rerun["version"] == str(len(before[0]) + 1)
    abandoned = client.get_run(leftovers[0].info.run_id)
    assert abandoned.info.status == "FAILED" and abandoned.data.tags[STATUS_TAG].startswith("rolled back")
    assert not list((in_workspace / "fault-runs").glob(f"runs/*/register/{PENDING}"))
    records = assert_ledger_chains(client)
    assert records[: len(before[2])] == before[2] and records[-1]["run_id"] == rerun["run_id"]
    down = [name for name, proc in stack.procs.items() if proc.poll() is not None]
    assert not down, f"{down} did not survive the outage"
