"""Prefect's temporary API started early: only where Prefect itself would start one, and a real flow runs on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import prefect_start

PACKAGE = prefect_start.prefect_package()


def write_profiles(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "profiles.toml").write_text(text)


@pytest.mark.parametrize(
    ("environ", "profiles", "expected"),
    [
        ({}, None, True),  # Prefect's default profile: ephemeral on, no API URL
        ({"PREFECT_API_URL": "http://team:4200/api"}, None, False),  # a team server
        ({}, 'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://team:4200/api"\n', False),
        ({"PREFECT_PROFILE": "local"}, None, False),  # Prefect's own `local` profile names a URL
        ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}, None, False),
        ({}, 'active = "plain"\n[profiles.plain]\n', False),  # a profile without ephemeral mode: Prefect's default off
        ({"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true"}, 'active = "plain"\n[profiles.plain]\n', True),
        ({"TUNEPIPE_EARLY_PREFECT_SERVER": "0"}, None, False),
    ],
)
def test_starts_early_only_where_prefect_would_start_a_temporary_server(
    tmp_path: Path, environ: dict[str, str], profiles: str | None, expected: bool
) -> None:
    home = tmp_path / "prefect-home"
    if profiles is not None:
        write_profiles(home, profiles)
    env = {"PREFECT_HOME": str(home), **environ}
    assert prefect_start.would_start_server(env, tmp_path, PACKAGE) is expected


@pytest.mark.parametrize(
    ("name", "text"),
    [("prefect.toml", "[api]\nurl = 'http://x/api'\n"), (".env", "PREFECT_API_URL=http://x/api\n")],
)
def test_settings_files_it_does_not_read_leave_the_start_to_prefect(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert not prefect_start.would_start_server({"PREFECT_HOME": str(tmp_path / "h")}, tmp_path, PACKAGE)


def test_not_once_prefect_has_read_its_settings() -> None:
    import prefect  # noqa: F401  # as in this test process: the settings are read, an env change would be ignored

    assert not prefect_start.wanted()


CHILD = """
import json, sys
from flows import prefect_start
server = prefect_start.start_early()
server.ready(("json",))
from prefect import flow, task
from prefect.settings import PREFECT_API_URL

@task
def one():
    return 1

@flow
def trivial():
    return one()

print(json.dumps({"result": trivial(), "api": PREFECT_API_URL.value(), "early": server.api_url}))
"""


@pytest.mark.integration
def test_a_flow_runs_on_the_early_server_and_it_stops_at_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    env["TUNEPIPE_PREFECT_KEEP_S"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["result"] == 1 and out["api"] == out["early"]  # Prefect used the early server
    assert done.stderr.count("Starting temporary server") == 1  # and started none of its own
    port = out["early"].split(":")[2].split("/")[0]
    assert not prefect_start.healthy(out["early"]), f"the server on port {port} still answers after exit"


def run_child(tmp_path: Path, keep_s: str, **extra: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    env.update(TUNEPIPE_PREFECT_KEEP_S=keep_s, **extra)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.integration
def test_the_server_is_kept_for_the_next_command_and_stops_when_idle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, err1 = run_child(tmp_path, "30")
    try:
        assert err1.count("Starting temporary server") == 1 and "kept 30 s" in err1
        assert prefect_start.healthy(first["early"])  # outlived its command
        record = prefect_start.read_record(home)
        assert record and record["port"] == int(first["early"].split(":")[2].split("/")[0])
        assert not list((home / prefect_start.LEASES_DIR).glob("*"))  # the command gave its lease back

        second, err2 = run_child(tmp_path, "30")
        assert second["result"] == 1 and second["api"] == first["early"]  # the same server answered the next one
        assert "Starting temporary server" not in err2 and f"(pid {record['pid']})" in err2

        other, err3 = run_child(tmp_path, "30", PREFECT_LOGGING_LEVEL="WARNING")  # other settings: not that server
        assert other["api"] != first["early"] and "Starting temporary server" in err3
        assert not prefect_start.healthy(other["early"])  # its own, stopped with it
        assert prefect_start.healthy(first["early"])  # the kept one, untouched
    except BaseException:
        prefect_start.stop_kept(home)
        raise
    env_home = {"PREFECT_HOME": str(home)}
    # idle: a short keep stops it by itself (a fresh server, launched with keep 2 s, after the kept one is stopped)
    assert prefect_start.stop_kept(home) == record["pid"]
    assert not prefect_start.healthy(first["early"])
    short, _ = run_child(tmp_path, "2", **env_home)
    assert prefect_start.healthy(short["early"]) or prefect_start.read_record(home) is None
    deadline = time.monotonic() + 30
    while prefect_start.healthy(short["early"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not prefect_start.healthy(short["early"]), "the kept server did not stop after its idle time"
    while prefect_start.read_record(home) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the record goes once uvicorn has finished shutting down, a moment after the port closes
    assert prefect_start.read_record(home) is None  # and removed its record


def test_keep_seconds_is_read_strictly() -> None:
    assert prefect_start.keep_seconds({}) == prefect_start.DEFAULT_KEEP_S
    assert prefect_start.keep_seconds({"TUNEPIPE_PREFECT_KEEP_S": "0"}) == 0.0
    with pytest.raises(ValueError, match="TUNEPIPE_PREFECT_KEEP_S='soon'"):
        prefect_start.keep_seconds({"TUNEPIPE_PREFECT_KEEP_S": "soon"})
