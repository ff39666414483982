"""The whole flow on a tiny slice: real Prefect (ephemeral API), real MLflow sqlite store, real model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.registry import ledger, store

from . import conftest

pytestmark = pytest.mark.integration
runner = CliRunner()
NAME = "financial-sentiment"
SELECT_RUNTIME = "export.select_runtime=true"  # this module checks the serving runtime chosen by measurement


def overrides(*extra: str) -> list[str]:
    return conftest.overrides(SELECT_RUNTIME, *extra)


def cli_sets(*extra: str) -> list[str]:
    return conftest.cli_sets(SELECT_RUNTIME, *extra)


def registry_state(workspace: Path) -> dict:
    client = store.connect(load_config(None, overrides()))
    try:
        versions = client.search_model_versions(f"name='{NAME}'")
    except Exception:
        return {}

    def alias(name: str) -> str | None:
        found = store.alias_version(client, NAME, name)
        return None if found is None else str(found.version)

    return {
        "versions": sorted(str(v.version) for v in versions),
        "champion": alias("champion"),
        "challenger": alias("challenger"),
    }


@pytest.fixture(scope="module")
def first_run(workspace: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        return retrain(None, overrides())


def test_first_run_registers_champion_with_lineage(first_run: dict, in_workspace: Path):
    reg = first_run["registered"]
    assert reg["version"] == "1" and reg["alias"] == "champion" and reg["promoted"]
    result = runner.invoke(app, ["lineage", f"{NAME}@champion", "--json", *cli_sets()])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["version"] == "1" and "champion" in info["aliases"]
    assert set(info["metrics"]) >= {"accuracy", "macro_f1", "f1.negative"}
    assert info["gates"]["passed"] is True
    assert info["data"]["md5"] and set(info["data"]["splits"]) == {"train", "validation", "test"}
    assert info["config"]["data"]["path"] == "data/sample.csv"
    assert info["config_hash"] == load_config(None, overrides()).config_hash()
    assert info["git"]["commit"]
    assert info["precision"] in ("fp32", "bf16")
    assert info["runtime"]["chosen"] in {row["runtime"] for row in info["runtime"]["candidates"]}
    text = runner.invoke(app, ["lineage", f"{NAME}@champion", *cli_sets()])
    assert text.exit_code == 0 and f"serving runtime: {info['runtime']['chosen']}" in text.output
    assert info["capability"]["bf16_hardware"] in ("True", "False") and info["capability"]["world_size"] == "1"
    # the registered model's files are in the store, not in a ./mlruns of the working directory
    assert not (in_workspace / "mlruns").exists()
    assert list((in_workspace / ".tunepipe" / "mlartifacts").rglob("MLmodel"))


def test_predict_matches_pyfunc_and_prints_probabilities(first_run: dict, in_workspace: Path):
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "The company will hold its AGM in May."]
    sets = cli_sets()
    result = runner.invoke(app, ["predict", "--model", f"{NAME}@champion", *texts, *sets])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert row["label"] in ("negative", "neutral", "positive")
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    store.connect(load_config(None, overrides()))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    frame = pyfunc.predict(pd.DataFrame({"text": texts}))
    assert list(frame["label"]) == [r["label"] for r in rows]


def test_registered_model_loads_from_code_without_a_pickle(first_run: dict, in_workspace: Path, tmp_path: Path):
    store.connect(load_config(None, overrides()))
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path)))
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("pyfunc_model.py") and "python_model" not in flavor
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle") or "pickle" in p.name]
    loaded = mlflow.pyfunc.load_model(str(folder))
    assert loaded.predict(pd.DataFrame({"text": ["Profit rose."]}))["label"].iloc[0] in (
        "negative",
        "neutral",
        "positive",
    )


def test_rerun_with_same_data_and_config_keeps_the_champion(first_run: dict, in_workspace: Path):
    second = retrain(None, overrides(), force=True)  # unchanged data and config: skipped without force
    reg = second["registered"]
    assert reg["version"] == "2" and reg["alias"] == "challenger" and not reg["promoted"]
    failed = [c for c in second["gate"]["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["beats_champion:macro_f1"]
    assert registry_state(in_workspace)["champion"] == "1"
    client = store.connect(load_config(None, overrides()))
    last = ledger.read(client, NAME)[-1]
    assert last["action"] == "refuse" and last["version"] == "2" and last["previous_champion"] == "1"
    assert "beats_champion" in last["reason"]


def _bad_file(workspace: Path, name: str, rows: list[tuple[str, str, str]]) -> str:
    good = pd.read_csv(workspace / "data" / "sample.csv")
    frame = good.assign(split=["train"] * 60 + ["validation"] * 15 + ["test"] * 15)
    frame = pd.concat([frame, pd.DataFrame(rows, columns=["text", "label", "split"])], ignore_index=True)
    path = workspace / "data" / name
    frame.to_csv(path, index=False)
    return f"data/{name}"


@pytest.mark.parametrize(
    ("case", "rows", "rule", "line"),
    [
        ("unknown_label", [("Output grew at the Espoo plant.", "bullish", "train")], "label_in_set", 92),
        ("empty_text", [("", "neutral", "test")], "text_length", 92),
        ("leak", [("__TRAIN0__", "__LABEL0__", "test")], "text_in_two_splits", 92),
    ],
)
def test_bad_data_fails_validation_and_leaves_registry_unchanged(first_run, in_workspace: Path, case, rows, rule, line):
    if case == "leak":
        head = pd.read_csv(in_workspace / "data" / "sample.csv").iloc[0]
        rows = [(head["text"], head["label"], "test")]
    path = _bad_file(in_workspace, f"{case}.csv", rows)
    before = registry_state(in_workspace)
    labels = "data.labels=[negative, neutral, positive]"  # declared, as in configs/default.yaml
    with pytest.raises(DataValidationError) as err:
        retrain(None, overrides(f"data.path={path}", labels))
    message = str(err.value)
    assert f"{path} row {line}" in message and rule in message
    assert registry_state(in_workspace) == before
    # and through the CLI: exit 1 with the same report
    sets = cli_sets(f"data.path={path}", labels)
    result = runner.invoke(app, ["run", *sets])
    assert result.exit_code == 1
    assert f"{path} row {line}" in result.output and rule in result.output
    assert registry_state(in_workspace) == before
