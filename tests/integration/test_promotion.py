"""Promotion, refusal, forced promotion and rollback against a real MLflow sqlite store and real models.

v1 is trained one step (weak) and becomes the first champion; v2 is trained properly but registered as
challenger (its run demands an impossible margin); `tunepipe promote` then re-gates both on v2's test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir, new_run
from pipeline_lib.registry import store
from pipeline_lib.steps import STEPS, run_step, with_inferred_labels
from pipeline_lib.task_types.classification import torch_logits

from .conftest import cli_sets, overrides

pytestmark = pytest.mark.integration
runner = CliRunner()
NAME = "financial-sentiment"
GATES = [
    "data.split.test=0.3",
    'gates.slices=[{"name": "numbers", "pattern": "\\\\d", "floor": 0.0, "no_regression": false}]',
    "gates.bootstrap_resamples=300",
]


def settings(*extra: str) -> list[str]:
    return overrides(*GATES, *extra)


def pipeline(*extra: str) -> tuple[RunDir, dict]:
    """Every step in order, without Prefect; the register step's result."""
    cfg = load_config(None, settings(*extra))
    run = new_run(cfg.paths.artifacts)
    result = None
    for name in STEPS:
        result = run_step(name, cfg, run)
    return run, result.to_dict()


def champion() -> str | None:
    found = store.alias_version(store.connect(load_config(None, settings())), NAME, store.CHAMPION)
    return None if found is None else str(found.version)


def ledger() -> list[dict]:
    result = runner.invoke(app, ["ledger", NAME, "--json", *cli_sets(*GATES)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def versions(workspace: Path) -> dict[str, RunDir]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        weak_run, weak = pipeline("train.max_steps=1")
        strong_run, strong = pipeline("train.max_steps=40", "gates.min_improvement=1.0")
    assert (weak["version"], weak["alias"]) == ("1", "champion")
    assert (strong["version"], strong["alias"]) == ("2", "challenger")
    return {"1": weak_run, "2": strong_run}


def test_better_version_is_promoted_and_weaker_one_refused_then_rolled_back(versions, in_workspace: Path):
    sets = cli_sets(*GATES)
    promoted = runner.invoke(app, ["promote", NAME, "2", *sets])
    assert promoted.exit_code == 0, promoted.output
    assert "v2 promoted to champion" in promoted.output and "PASS  beats_champion:macro_f1" in promoted.output
    assert champion() == "2"
    last = ledger()[-1]
    assert (last["action"], last["version"], last["previous_champion"], last["force"]) == ("promote", "2", "1", False)
    assert last["gates"]["beats_champion:macro_f1"] == "PASS" and last["gates"]["slice:numbers:floor"] == "PASS"
    assert "budget:latency_p95_ms" in last["gates"] and "onnx:metric_diff" in last["gates"]

    # the one-step model is weaker on v1's own test split: refused, reason ledgered, alias unchanged
    refused = runner.invoke(app, ["promote", NAME, "1", *sets])
    assert refused.exit_code == 2, refused.output
    assert "refused, champion unchanged" in refused.output and "FAIL  beats_champion:macro_f1" in refused.output
    assert champion() == "2"
    last = ledger()[-1]
    assert (last["action"], last["version"], last["previous_champion"]) == ("refuse", "1", "2")
    assert last["gates"]["beats_champion:macro_f1"] == "FAIL" and "beats_champion:macro_f1" in last["reason"]
    assert "CI [" in last["reason"]

    # --force without a reason changes nothing
    entries = len(ledger())
    no_reason = runner.invoke(app, ["promote", NAME, "1", "--force", *sets])
    assert no_reason.exit_code == 1 and "--reason" in no_reason.output
    assert champion() == "2" and len(ledger()) == entries

    # rollback restores v1, then there is nothing earlier to go back to
    back = runner.invoke(app, ["rollback", NAME, *sets])
    assert back.exit_code == 0, back.output
    assert champion() == "1"
    last = ledger()[-1]
    assert (last["action"], last["version"], last["previous_champion"]) == ("rollback", "1", "2")
    again = runner.invoke(app, ["rollback", NAME, *sets])
    assert again.exit_code == 1 and "no previous one" in again.output
    assert champion() == "1"

    # a forced promotion skips the gates and says so in the ledger
    forced = runner.invoke(app, ["promote", NAME, "2", "--force", "--reason", "hotfix: v1 mislabels numbers", *sets])
    assert forced.exit_code == 0, forced.output
    last = ledger()[-1]
    assert (last["action"], last["version"], last["force"], last["reason"]) == (
        "force-promote",
        "2",
        True,
        "hotfix: v1 mislabels numbers",
    )
    assert champion() == "2"

    readable = runner.invoke(app, ["ledger", NAME, *sets])
    assert readable.exit_code == 0
    actions = [line.split()[1] for line in readable.output.strip().splitlines()]
    assert actions == ["promote", "refuse", "promote", "refuse", "rollback", "force-promote"]


def test_promote_unknown_version_is_a_clear_error(versions, in_workspace: Path):
    result = runner.invoke(app, ["promote", NAME, "99", *cli_sets(*GATES)])
    assert result.exit_code == 1 and "financial-sentiment/99: no such registered model version" in result.output


def test_pyfunc_on_alias_matches_cli_predict_and_pytorch(versions, in_workspace: Path):
    test = pd.read_parquet(versions["2"].split_file("test"))
    texts = test["text"].astype(str).tolist()[:12]
    cfg = load_config(None, settings())
    store.connect(cfg)
    alias = store.alias_version(store.connect(cfg), NAME, store.CHAMPION)
    run = versions[str(alias.version)]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    from_pyfunc = list(pyfunc.predict(pd.DataFrame({"text": texts}))["label"])
    result = runner.invoke(app, ["predict", "--model", f"{NAME}@champion", *texts, *cli_sets(*GATES)])
    assert result.exit_code == 0, result.output
    from_cli = [json.loads(line)["label"] for line in result.output.strip().splitlines()]
    logits = torch_logits(run.model_dir, texts, cfg.model.max_length)
    labels = with_inferred_labels(cfg, run).data.label_names  # the labels validate inferred for that run
    from_torch = [labels[i] for i in np.argmax(logits, axis=-1)]
    assert from_pyfunc == from_cli == from_torch
    assert len(set(from_torch)) > 1  # a model that predicts one label everywhere would make this vacuous
