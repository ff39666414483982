"""`tunepipe serve` as a real subprocess on 127.0.0.1: /predict, /health, /version, and a promotion picked up
without a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.layout import new_run
from pipeline_lib.steps import STEPS, run_step

from .conftest import cli_sets, overrides

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, payload: dict | None = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def two_versions(workspace: Path) -> None:
    """v1 champion, v2 challenger (its run asks for an impossible margin): one training step each."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        for extra in (["train.seed=1"], ["train.seed=2", "gates.min_improvement=1.0"]):
            cfg = load_config(None, overrides("train.max_steps=1", *extra))
            run = new_run(cfg.paths.artifacts)
            for name in STEPS:
                run_step(name, cfg, run)


@pytest.fixture
def server(two_versions, in_workspace: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "flows.cli", "serve", "--model", f"{NAME}@champion", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--refresh", "0.5", *cli_sets()],
        cwd=in_workspace,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"server exited: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "server did not come up in 120 s"
        try:
            if call(f"{base}/health")[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def test_serve_predicts_and_follows_the_champion(server: str, in_workspace: Path):
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "The AGM will be held in May."]
    status, body = call(f"{server}/predict", {"texts": texts})
    assert status == 200, body
    assert body["version"] == "1" and len(body["predictions"]) == 2
    for row in body["predictions"]:
        assert row["label"] in ("negative", "neutral", "positive")
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
    assert call(f"{server}/predict", {"texts": []})[0] == 422
    assert call(f"{server}/predict", {"text": "not a list"})[0] == 422
    assert call(f"{server}/version")[1]["version"] == "1"

    promoted = runner.invoke(app, ["promote", NAME, "2", "--force", "--reason", "serve test", *cli_sets()])
    assert promoted.exit_code == 0, promoted.output
    deadline = time.monotonic() + 60
    while call(f"{server}/version")[1]["version"] != "2":
        assert time.monotonic() < deadline, "the server never picked up the new champion"
        time.sleep(0.5)
    status, body = call(f"{server}/predict", {"texts": texts})
    assert status == 200 and body["version"] == "2"


def test_serve_unknown_model_fails_at_start(two_versions, in_workspace: Path):
    result = runner.invoke(app, ["serve", "--model", f"{NAME}@nope", *cli_sets()])
    assert result.exit_code == 1 and "no such registered model or alias" in result.output
