"""NER through the same flow: real CoNLL-2003 slices, real Prefect, MLflow sqlite store, real model and ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.retrain import retrain
from pipeline_lib.config import load_config
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.registry import store

pytestmark = pytest.mark.integration
runner = CliRunner()
CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "conll2003.yaml")
NAME = "conll-ner"
SENTENCES = {"eng.train": 120, "eng.testa": 30, "eng.testb": 30}
FAST = [
    "data.path=conll",
    "train.max_steps=4",
    "train.batch_size=8",
    "train.early_stopping_patience=0",
    "gates.floors={}",
    "gates.latency_samples=5",
]


def _head(source: Path, target: Path, sentences: int) -> None:
    """The first `sentences` sentences of a CoNLL file (a slice in the test's temp dir, never in the repo)."""
    lines, seen = [], 0
    for line in source.read_text(encoding="utf-8").splitlines(keepends=True):
        lines.append(line)
        if not line.strip() and lines[-2:-1] and not lines[-2].startswith("-DOCSTART-"):
            seen += 1
            if seen >= sentences:
                break
    target.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def ner_workspace(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("ner")
    (root / "conll").mkdir()
    for name, n in SENTENCES.items():
        _head(shared_data / "conll2003" / name, root / "conll" / name, n)
    return root


@pytest.fixture(scope="module")
def first_run(ner_workspace: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ner_workspace)
        return retrain(CONFIG, FAST)


def _sets(*extra: str) -> list[str]:
    return ["--config", CONFIG, *[arg for item in (*FAST, *extra) for arg in ("--set", item)]]


def _state() -> dict:
    client = store.connect(load_config(CONFIG, FAST))
    versions = client.search_model_versions(f"name='{NAME}'")
    champion = store.alias_version(client, NAME, store.CHAMPION)
    return {"versions": sorted(v.version for v in versions), "champion": champion and champion.version}


def test_ner_run_registers_champion_with_entity_metrics(first_run: dict, ner_workspace: Path, monkeypatch):
    monkeypatch.chdir(ner_workspace)
    reg = first_run["registered"]
    assert reg["name"] == NAME and reg["version"] == "1" and reg["alias"] == "champion"
    run_dir = Path(first_run["run_dir"])
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"} <= set(metrics)
    assert set(metrics["per_class"]) <= {"PER", "ORG", "LOC", "MISC"}
    test = pd.read_parquet(run_dir / "data" / "test.parquet")
    assert metrics["n"] == len(test) == 30 and metrics["n_tokens"] == sum(map(len, test["tokens"]))
    export = json.loads((run_dir / "export" / "summary.json").read_text())
    assert export["metric_name"] == "entity_f1" and export["agreement"] >= 0.995 and export["n"] == 30
    result = runner.invoke(app, ["lineage", f"{NAME}@champion", "--json", *_sets()])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert "entity_f1" in info["metrics"] and info["config"]["task"] == "token_classification"
    assert set(info["data"]["splits"]) == {"train", "validation", "test"}


def test_predict_prints_entity_spans_with_offsets(first_run: dict, ner_workspace: Path, monkeypatch):
    monkeypatch.chdir(ner_workspace)
    texts = ["EU rejects German call to boycott British lamb .", "Peter Blackburn flew to Brussels."]
    result = runner.invoke(app, ["predict", "--model", f"{NAME}@champion", *texts, *_sets()])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["text"] for r in rows] == texts and all(r["model"] == f"{NAME}/1" for r in rows)
    for row in rows:
        for entity in row["entities"]:
            assert entity["type"] in ("PER", "ORG", "LOC", "MISC") and 0 < entity["score"] <= 1
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]
    store.connect(load_config(CONFIG, FAST))
    frame = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(pd.DataFrame({"text": texts}))
    assert [json.loads(e) for e in frame["entities"]] == [r["entities"] for r in rows]


def test_bad_tag_fails_validation_and_leaves_registry_unchanged(first_run: dict, ner_workspace: Path, monkeypatch):
    monkeypatch.chdir(ner_workspace)
    bad = ner_workspace / "bad"
    bad.mkdir(exist_ok=True)
    for name in SENTENCES:
        text = (ner_workspace / "conll" / name).read_text()
        (bad / name).write_text(text.replace("Blackburn NNP I-NP I-PER", "Blackburn NNP I-NP I-PERSON", 1))
    before = _state()
    with pytest.raises(DataValidationError) as err:
        retrain(CONFIG, [*FAST, "data.path=bad"])
    rows = "\n".join(str(failure) for failure in err.value.failures)
    assert "bad/eng.train row 13 (train): tag_in_set — sentence at line 13, token 2 'Blackburn': tag 'B-PERSON'" in rows
    assert "[tag_in_set], e.g. bad/eng.train row 13" in str(err.value)  # the message, once per cause
    assert _state() == before
    result = runner.invoke(app, ["run", *_sets("data.path=bad")])
    assert result.exit_code == 1 and "tag_in_set" in result.output
    assert _state() == before
