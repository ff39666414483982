"""Registration against a tracking server that goes away: the retry policy (a real client, a closed port) and
the settling of an interrupted registration's journal (a real local MLflow store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline_lib.config import load_config
from pipeline_lib.registry import ledger, promotion, store
from pipeline_lib.registry.errors import RegistryUnavailable
from pipeline_lib.registry.journal import PENDING, STATUS_TAG, Journal, sweep
from pipeline_lib.registry.retries import bound_http_retries, is_unreachable, retry_unreachable
from tests.integration.servers import free_port
from tests.unit.stores import store_with_versions

NAME = "recovery-test"


def test_unreachable_server_is_retried_with_backoff_then_given_up(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    bound_http_retries(load_config(None, ["registry.http_retries=0"]).registry)
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    calls, sleeps = [], []

    def attempt(number: int) -> None:
        calls.append(number)
        client.get_experiment_by_name("anything")

    with pytest.raises(RegistryUnavailable, match="after 3 attempts") as raised:
        retry_unreachable(
            attempt,
            retries=2,
            wait_s=0.25,
            on_give_up=lambda n, exc: RegistryUnavailable(f"after {n} attempts"),
            sleep=sleeps.append,
        )
    assert calls == [1, 2, 3] and sleeps == [0.25, 0.5]
    assert is_unreachable(raised.value.__cause__)
    with pytest.raises(KeyError):  # anything but an unreachable server fails at once
        retry_unreachable(lambda n: {}["x"], retries=2, wait_s=1, on_give_up=RegistryUnavailable, sleep=sleeps.append)
    assert sleeps == [0.25, 0.5] and not is_unreachable(KeyError("x"))


def test_the_users_own_http_settings_win(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    bound_http_retries(load_config(None, ["registry.http_retries=1", "registry.http_timeout_s=7"]).registry)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def _dead_owner() -> str:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{socket.gethostname()}:{proc.stdout.strip()}"


@pytest.fixture
def crashed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A local store where v1 is champion (ledgered) and a crashed process got v2 as far as its alias move."""
    cfg, client, runs = store_with_versions(tmp_path, monkeypatch, NAME, 2)
    promotion.move_champion(client, NAME, "1", expected=None, action="promote", reason="first", run_id=runs[0])
    promotion.record(client, NAME, "2", action="promote", previous="1", reason="second", run_id=runs[1])
    client.set_terminated(runs[1], "FINISHED")  # as a registration does just before its alias move
    path = tmp_path / "art" / "runs" / "r2" / "register" / PENDING
    journal = Journal(path, store.tracking_uri(cfg), NAME, run_id=runs[1], owner=_dead_owner())
    journal.at("alias move", version="2", outcome={"alias": "champion", "promoted": True})
    return client, tmp_path / "art", store.tracking_uri(cfg), runs


def test_interrupted_before_its_alias_move_is_rolled_back(crashed_store):
    client, artifacts, uri, runs = crashed_store

    assert sweep(client, artifacts, uri) == [runs[1]]

    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]
    assert str(store.alias_version(client, NAME, "champion").version) == "1"
    assert [(r["version"], r["run_id"]) for r in ledger.read(client, NAME)] == [("1", runs[0])]
    run = client.get_run(runs[1])
    assert run.info.status == "FAILED" and run.data.tags[STATUS_TAG].startswith("rolled back")
    assert not list(artifacts.rglob(PENDING))


def test_interrupted_after_its_alias_move_landed_is_completed(crashed_store):
    client, artifacts, uri, runs = crashed_store
    client.set_registered_model_alias(NAME, "champion", "2")  # the request landed; its answer was lost

    assert sweep(client, artifacts, uri) == [runs[1]]

    assert sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'")) == ["1", "2"]
    assert [r["version"] for r in ledger.read(client, NAME)] == ["1", "2"]
    run = client.get_run(runs[1])
    assert run.info.status == "FINISHED" and run.data.tags[STATUS_TAG] == "complete"
    assert not list(artifacts.rglob(PENDING))


def test_a_live_registrations_journal_is_left_alone(crashed_store):
    client, artifacts, uri, _ = crashed_store
    path = next(artifacts.rglob(PENDING))
    journal = Journal.load(path)
    journal.owner = f"{socket.gethostname()}:{os.getpid()}"
    journal.at(journal.stage)

    assert sweep(client, artifacts, uri) == []
    assert path.is_file() and len(client.search_model_versions(f"name='{NAME}'")) == 2
