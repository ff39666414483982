"""Stable splits and a fair champion comparison, the README's "Retrain on new data" path in a git + DVC project:
a champion under the old stratified split, a challenger under the hash split (the comparison leaves out the rows
the champion saw, or refuses), then new rows through `tunepipe data add` and a retrain whose test split shares no
row with the champion's training data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.data.keys import text_digests
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.layout import RunDir
from pipeline_lib.registry import ledger, store

from .conftest import FAST_RUN
from .repos import git_dvc_project

pytestmark = pytest.mark.integration
runner = CliRunner()
NAME = "financial-sentiment"
DATA = "data/financial_sentiment.csv"
SETS = [f"data.path={DATA}", *FAST_RUN]
NEW_ROWS = """text,label
"Quarterly net sales at the Oulu packaging unit rose 14 % to EUR 62.3 mn.",positive
"The board proposes a dividend of EUR 0.48 per share, up from EUR 0.40.",positive
"The retailer cut its full-year outlook after weak demand in the Baltic stores.",negative
"Operating loss widened to EUR 5.1 mn as raw material costs climbed.",negative
"The company will publish its half-year report on 14 August.",neutral
"The new distribution centre in Vantaa employs about 120 people.",neutral
"""


def keys(run: RunDir, *splits: str) -> set[str]:
    return {digest for split in splits for digest in text_digests(pd.read_parquet(run.split_file(split))["text"])}


def champion_figures(outcome: dict) -> dict:
    check = next(c for c in outcome["gate"]["checks"] if c["name"].startswith("beats_champion"))
    return {**check["figures"], "passed": check["passed"], "detail": check["detail"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stable")
    git_dvc_project(root, DATA, pd.read_csv(SEED_DATASET))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / '.tunepipe' / 'mlflow.db'}")
        yield root


@pytest.fixture(scope="module")
def runs(project: Path) -> dict[str, dict]:
    """v1 under the stratified split, v2 under the hash split on the same data (gated against v1)."""
    v1 = retrain(None, [*SETS, "data.split.method=stratified"])
    v2 = retrain(None, SETS)
    return {"v1": v1, "v2": v2}


def test_champion_from_another_split_is_compared_on_unseen_rows_or_refused(project: Path, runs: dict):
    v1, v2 = runs["v1"], runs["v2"]
    assert v1["registered"]["alias"] == "champion" and v1["registered"]["version"] == "1"
    seen = keys(RunDir(v1["run_dir"]), "train", "validation")
    test = pd.read_parquet(RunDir(v2["run_dir"]).split_file("test"))
    overlap = sum(digest in seen for digest in text_digests(test["text"]))
    assert overlap > 0  # the stratified split put most of the hash split's test rows into v1's training data

    figures = champion_figures(v2)
    assert (figures["n_test"], figures["overlap"]) == (len(test), overlap)
    assert figures["n_compared"] == len(test) - overlap < 30  # too few left: no fair comparison
    assert not figures["passed"] and "fewer than gates.champion_min_rows=30" in figures["detail"]
    assert v2["registered"]["alias"] == "challenger" and "champion_min_rows" in v2["registered"]["reason"]
    client = store.connect(load_config(None, SETS))
    assert str(store.alias_version(client, NAME, "champion").version) == "1"  # nothing moved
    record = ledger.read(client, NAME)[-1]
    assert record["action"] == "refuse" and record["version"] == "2"
    assert record["comparison"]["overlap"] == overlap and record["comparison"]["split_method"] == "stratified-v1"
    assert client.get_model_version(NAME, "2").tags["data.split_method"] == "hash-v1"

    # a lower minimum compares on the unseen rows only (re-gated through `tunepipe promote`)
    sets = [a for s in [*SETS, "gates.champion_min_rows=1"] for a in ("--set", s)]
    result = runner.invoke(app, ["promote", NAME, "2", *sets])
    assert f"on the {len(test) - overlap} of {len(test)} test rows the champion never saw ({overlap} left out)" in (
        result.output
    ), result.output


def test_new_rows_never_move_old_ones_and_the_retrain_compares_on_every_test_row(project: Path, runs: dict):
    client = store.connect(load_config(None, SETS))
    if str(store.alias_version(client, NAME, "champion").version) != "2":
        forced = runner.invoke(app, ["promote", NAME, "2", "--force", "--reason", "new split method", "--set", SETS[0]])
        assert forced.exit_code == 0, forced.output
    (project / "new_rows.csv").write_text(NEW_ROWS)
    added = runner.invoke(app, ["data", "add", "new_rows.csv", "--dataset", "financial_sentiment"])
    assert added.exit_code == 0, added.output

    v3 = retrain(None, SETS)
    champion_run, new_run = RunDir(runs["v2"]["run_dir"]), RunDir(v3["run_dir"])
    for split in ("train", "validation", "test"):  # every old row kept its split
        assert keys(champion_run, split) <= keys(new_run, split)
    assert not keys(new_run, "test") & keys(champion_run, "train", "validation")
    figures = champion_figures(v3)
    n_test = len(pd.read_parquet(new_run.split_file("test")))
    assert (figures["overlap"], figures["n_compared"], figures["n_test"]) == (0, n_test, n_test)
    assert f"on all {n_test} test rows (none seen by the champion)" in figures["detail"]
