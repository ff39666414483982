"""`tunepipe serve` as a real subprocess on 127.0.0.1: /predict, /health, /version, and a promotion picked up
without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.layout import new_run
from pipeline_lib.steps import STEPS, run_step

from .conftest import cli_sets, overrides
from .servers import call, tunepipe_serve, wait_for_log

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
runner = CliRunner()


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
    log = in_workspace.parent / f"{in_workspace.name}-serve.log"
    with tunepipe_serve(in_workspace, f"{NAME}@champion", ["--refresh", "0.5", *cli_sets()], log) as base:
        yield base


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
    wait_for_log(in_workspace / ".tunepipe" / "predictions", lambda log: set(log["version"]) == {"1", "2"})


def test_serve_unknown_model_fails_at_start(two_versions, in_workspace: Path):
    result = runner.invoke(app, ["serve", "--model", f"{NAME}@nope", *cli_sets()])
    assert result.exit_code == 1 and "no such registered model or alias" in result.output
