"""Drift against the champion's training data, in the validate step of the real flow: a champion trained on one
data version; a new version with a shifted label mix and longer texts shows its drift figures in lineage and
report; with `block` the run stops before training, registry unchanged; with `warn` it proceeds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.registry import store

from .conftest import FAST_RUN

pytestmark = pytest.mark.integration
runner = CliRunner()
NAME = "financial-sentiment"


def sets(data: str, *extra: str) -> list[str]:
    return [f"data.path={data}", *FAST_RUN, *extra]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift")
    (root / "data").mkdir()
    seed = pd.read_csv(SEED_DATASET)
    seed.to_csv(root / "data" / "v1.csv", index=False)
    # v2: most negative and neutral rows gone, every text twice as long, a few new rows
    kept = seed[(seed["label"] == "positive") | (seed.index % 6 == 0)]
    longer = kept.assign(
        text=kept["text"] + " The board expects the market to stay difficult for the rest of the year."
    )
    longer.to_csv(root / "data" / "v2.csv", index=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        champion = retrain(None, sets("data/v1.csv"))
        assert champion["registered"]["alias"] == "champion"
        yield root


def versions() -> list[str]:
    client = store.connect(load_config(None, sets("data/v1.csv")))
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'"))


def test_blocking_drift_stops_before_training_and_changes_nothing(project: Path):
    before = versions()
    runs = set((project / "artifacts" / "runs").iterdir())
    with pytest.raises(DataValidationError) as info:
        retrain(None, sets("data/v2.csv", "gates.drift.label_mix.action=block"))
    message = str(info.value)
    assert "[drift_label_mix]" in message and re.search(r"positive \d+\.\d% → \d+\.\d%", message)
    assert "> gates.drift.label_mix.max=0.1" in message and "gates.drift.label_mix.action=warn" in message
    assert versions() == before  # nothing registered
    (new_run,) = set((project / "artifacts" / "runs").iterdir()) - runs
    assert not (new_run / "model").exists() and not (new_run / "data" / "train.parquet").exists()  # never trained
    drift = json.loads((new_run / "validation" / "drift.json").read_text())
    assert drift["status"] == "compared" and drift["champion"] == "1"
    assert {f["name"] for f in drift["features"] if f["drifted"]} >= {"label_mix", "length_tokens"}


def test_warned_drift_proceeds_and_shows_in_lineage_and_report(project: Path, tmp_path: Path):
    outcome = retrain(None, sets("data/v2.csv"))
    assert outcome["registered"]["version"] == "2"
    cli = [a for s in sets("data/v2.csv") for a in ("--set", s)]
    info = json.loads(runner.invoke(app, ["lineage", f"{NAME}/2", "--json", *cli]).output)
    features = {f["name"]: f for f in info["drift"]["features"]}
    assert info["drift"]["champion"] == "1" and features["label_mix"]["drifted"]
    assert features["length_tokens"]["figure"] > 0.5 and features["length_tokens"]["action"] == "warn"
    text = runner.invoke(app, ["lineage", f"{NAME}/2", *cli]).output
    assert "drift against champion v1: label_mix" in text and "DRIFTED" in text
    client = store.connect(load_config(None, sets("data/v2.csv")))
    run = client.get_run(client.get_model_version(NAME, "2").run_id)
    assert run.data.metrics["drift.label_mix"] == pytest.approx(features["label_mix"]["figure"])
    report = Path(client.download_artifacts(run.info.run_id, "report/report.html", str(tmp_path))).read_text()
    assert "Drift against the champion" in report and 'alt="label_mix"' in report and 'alt="length_tokens"' in report
    first = json.loads(runner.invoke(app, ["lineage", f"{NAME}/1", "--json", *cli]).output)
    assert first["drift"]["status"].startswith("not applicable")  # the first champion had nothing to compare with
