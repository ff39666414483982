"""`tunepipe score` end to end with a real registered model (a few training steps), a real MLflow sqlite store and
real files: messy inputs (other column names, multi-line CSV fields, TSV, JSONL, Parquet, globs and folders), a run
killed with SIGKILL and resumed (every row exactly once), bad inputs refused with one clear error and the output
left as it was, Spark (pyspark on local[2], both routes) equal to local, and the Prefect flow `score` scoring only
new files and following the champion."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.layout import new_run
from pipeline_lib.scoring.output import read_manifest, read_scored
from pipeline_lib.steps import STEPS, run_step

from .conftest import cli_sets, overrides
from .servers import REPO, child_env

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
MODEL = f"{NAME}@champion"
LABELS = ("negative", "neutral", "positive")
runner = CliRunner()


@pytest.fixture(scope="module")
def project(workspace: Path) -> Path:
    """v1 champion, v2 challenger (its run asks for an impossible margin): one training step each; and a second
    registered model, `topics` v1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        runs = (["train.seed=1"], ["train.seed=2", "gates.min_improvement=1.0"], ["registry.model_name=topics"])
        for extra in runs:
            cfg = load_config(None, overrides("train.max_steps=1", *extra))
            run = new_run(cfg.paths.artifacts)
            for name in STEPS:
                run_step(name, cfg, run)
    return workspace


@pytest.fixture
def here(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def sentences(n: int) -> list[str]:
    texts = pd.read_csv(SEED_DATASET)["text"].tolist()
    return [f"{texts[i % len(texts)]}" + ("" if i < len(texts) else f" (#{i // len(texts)})") for i in range(n)]


def score(*args: str) -> object:
    return runner.invoke(app, ["score", "--model", MODEL, *args, *cli_sets()])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of a folder with the digest of its bytes."""
    if not folder.exists():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_messy_inputs(here: Path):
    texts = sentences(60)
    inbox = here / "messy"
    (inbox / "deep").mkdir(parents=True)
    pd.DataFrame(
        {"tweet_id": range(20), "when": "2026-01-02", "what_was_said": [t + "\nmore" for t in texts[:20]]}
    ).to_csv(inbox / "a.csv", index=False)
    pd.DataFrame({"headline": texts[20:35], "topic": "markets"}).to_csv(inbox / "b.tsv", sep="\t", index=False)
    pd.DataFrame({"body": texts[35:50], "row_id": range(100, 115)}).to_json(
        inbox / "deep" / "c.jsonl", orient="records", lines=True
    )
    pd.DataFrame({"sentence": texts[50:60], "label": "neutral"}).to_parquet(inbox / "d.parquet")
    result = score(
        str(inbox / "*.csv"),
        str(inbox / "b.tsv"),
        str(inbox / "deep"),
        str(inbox / "d.parquet"),
        "--output",
        "out-messy",
    )
    assert result.exit_code == 0, result.output
    table = read_scored(here / "out-messy").to_pandas()
    assert len(table) == 60 and table["row_id"].is_unique
    assert set(table["label"]) <= set(LABELS)
    probabilities = table[[f"p_{label}" for label in LABELS]].sum(axis=1)
    assert ((probabilities - 1).abs() < 1e-4).all()
    assert set(table["model"]) == {NAME} and set(table["version"]) == {"1"}
    a = table[table["tweet_id"].notna()]
    assert sorted(a["what_was_said"]) == sorted(t + "\nmore" for t in texts[:20])  # multi-line fields, whole
    assert set(a["when"]) == {"2026-01-02"}
    assert sorted(table.loc[table["body"].notna(), "row_id"].astype(int)) == list(range(100, 115))  # its own ids
    parquet = table[table["sentence"].notna()]
    assert set(parquet["label_input"]) == {"neutral"}  # an input column named like an added one is kept, renamed
    manifest = read_manifest(here / "out-messy")
    (run,) = manifest["runs"]
    assert run["status"] == "complete" and run["rows_in"] == 60 and run["rows_bad"] == 0
    assert {Path(i["path"]).name: i["text_column"] for i in run["inputs"]} == {
        "a.csv": "what_was_said",
        "b.tsv": "headline",
        "c.jsonl": "body",
        "d.parquet": "sentence",
    }
    again = score(
        str(inbox / "*.csv"),
        str(inbox / "b.tsv"),
        str(inbox / "deep"),
        str(inbox / "d.parquet"),
        "--output",
        "out-messy",
    )
    assert again.exit_code == 0 and "already complete" in again.output


def test_several_models_prefix_all_but_the_first(here: Path):
    pd.DataFrame({"text": sentences(8)}).to_csv(here / "two.csv", index=False)
    result = score("--model", "topics@champion", "two.csv", "--output", "out-two")
    assert result.exit_code == 0, result.output
    table = read_scored(here / "out-two")
    added = ["row_id", "label", *(f"p_{label}" for label in LABELS), "model", "version", "onnx_sha256"]
    added += ["topics__label", *(f"topics__p_{label}" for label in LABELS), "topics__model", "topics__version"]
    assert table.column_names == ["text", *added, "topics__onnx_sha256", "scored_at"]
    assert set(table.column("model").to_pylist()) == {NAME}
    assert set(table.column("topics__model").to_pylist()) == {"topics"}
    assert [m["prefix"] for m in read_manifest(here / "out-two")["runs"][0]["models"]] == ["", "topics__"]
    twice = score("--model", f"{NAME}/2", "two.csv", "--output", "out-twice")
    assert twice.exit_code == 1 and "more than once" in twice.output and not (here / "out-twice").exists()


def test_killed_run_resumes_with_every_row_once(here: Path):
    pd.DataFrame({"text": sentences(1200)}).to_csv(here / "big.csv", index=False)
    out = here / "out-killed"
    args = [sys.executable, "-m", "flows.cli", "score", "--model", MODEL, "big.csv", "--output", str(out)]
    args += [*cli_sets("score.chunk_rows=20")]
    env = child_env(PYTHONPATH=str(REPO))
    with (here / "killed.log").open("w") as log:
        proc = subprocess.Popen(args, cwd=here, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while len(list(out.glob("part-*.parquet"))) < 3:
                assert proc.poll() is None, (here / "killed.log").read_text()
                assert time.monotonic() < deadline, "no part written in time"
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    parts_before = len(list(out.glob("part-*.parquet")))
    assert parts_before < 60, "the run finished before it could be killed"
    assert read_manifest(out)["runs"][0]["status"] == "running"
    resumed = score("big.csv", "--output", str(out), "--set", "score.chunk_rows=20")
    assert resumed.exit_code == 0, resumed.output
    assert f"{parts_before} already there" in resumed.output
    table = read_scored(out)
    ids = table.column("row_id").to_pylist()
    assert len(ids) == 1200 and len(set(ids)) == 1200
    short = read_manifest(out)["runs"][0]["inputs"][0]["sha256"][:12]
    assert set(ids) == {f"{short}:{i}" for i in range(1, 1201)}
    assert sorted(table.column("text").to_pylist()) == sorted(sentences(1200))
    assert read_manifest(out)["runs"][0]["status"] == "complete"


def test_bad_inputs_fail_clearly_and_change_nothing(here: Path):
    bad = here / "bad"
    bad.mkdir()
    pd.DataFrame({"text": sentences(10)}).to_csv(bad / "good.csv", index=False)
    out = here / "out-bad"
    first = score(str(bad / "good.csv"), "--output", str(out))
    assert first.exit_code == 0, first.output
    before = snapshot(out)

    (bad / "latin.csv").write_bytes("text\nLe chiffre d'affaires a progressé\n".encode("cp1252"))
    (bad / "empty.csv").write_bytes(b"")
    pd.DataFrame({"text": ["Sales rose.", "x" * 1_000_000]}).to_csv(bad / "huge.csv", index=False)
    cases = {
        "missing text column": (["--text-column", "review"], "field 'review'", "--text-column"),
        "not UTF-8": ([str(bad / "latin.csv")], "is not valid UTF-8", "--encoding cp1252"),
        "empty file": ([str(bad / "empty.csv")], "empty.csv: file is empty", "header line"),
        "1 MB text": ([str(bad / "huge.csv")], "huge.csv, row 2, field 'text': bad row: 1000000 characters", "skip"),
    }
    for case, (args, problem, fix) in cases.items():
        inputs = args if args[0] != "--text-column" else [str(bad / "good.csv"), *args]
        result = score(*inputs, "--output", str(out))
        assert result.exit_code == 1, (case, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and problem in errors[0] and fix in errors[0], (case, result.output)
        assert snapshot(out) == before, case

    other = runner.invoke(
        app, ["score", "--model", f"{NAME}/2", str(bad / "good.csv"), "--output", str(out), *cli_sets()]
    )
    assert other.exit_code == 1
    assert "written by financial-sentiment v1" in other.output and "another model version" in other.output
    assert "--overwrite" in other.output and snapshot(out) == before

    skipped = score(str(bad / "huge.csv"), "--output", str(here / "out-skip"), "--on-bad-row", "skip")
    assert skipped.exit_code == 0, skipped.output
    (bad_file,) = (here / "out-skip").glob("bad_rows-*.parquet")
    rows = pq.read_table(bad_file).to_pylist()
    assert [(r["row"], r["reason"].split(",")[0]) for r in rows] == [(2, "1000000 characters")]
    assert read_manifest(here / "out-skip")["runs"][0]["rows_bad"] == 1
    assert read_scored(here / "out-skip").num_rows == 1

    replaced = runner.invoke(
        app, ["score", "--model", f"{NAME}/2", str(bad / "good.csv"), "--output", str(out), "--overwrite", *cli_sets()]
    )
    assert replaced.exit_code == 0, replaced.output
    assert set(read_scored(out).column("version").to_pylist()) == {"2"}


def test_spark_equals_local(here: Path):
    pytest.importorskip("pyspark")
    pd.DataFrame({"id": range(150), "text": sentences(150)}).to_parquet(here / "spark.parquet")
    local = score("spark.parquet", "--output", "out-local")
    assert local.exit_code == 0, local.output
    expected = read_scored(here / "out-local").to_pandas().set_index("row_id").sort_index()
    for route in ("map_in_pandas", "spark_udf"):
        result = score(
            "spark.parquet",
            "--output",
            f"out-spark-{route}",
            "--engine",
            "spark",
            "--spark-master",
            "local[2]",
            "--set",
            f"score.spark_route={route}",
        )
        assert result.exit_code == 0, result.output
        spark = read_scored(here / f"out-spark-{route}").to_pandas().set_index("row_id").sort_index()
        assert list(spark.columns) == list(expected.columns)
        assert (spark["label"] == expected["label"]).all(), route
        for label in LABELS:
            assert (spark[f"p_{label}"] - expected[f"p_{label}"]).abs().max() < 1e-5, (route, label)
        assert (spark["id"] == expected["id"]).all()
        assert read_manifest(here / f"out-spark-{route}")["runs"][0]["engine"] == "spark"


def test_flow_scores_new_files_and_follows_the_champion(here: Path):
    from flows.score import score as score_flow

    inbox, out = here / "inbox", here / "out-flow"
    inbox.mkdir()
    sets = overrides()
    pd.DataFrame({"text": sentences(12)}).to_csv(inbox / "monday.csv", index=False)
    first = score_flow(str(inbox), str(out), [MODEL], None, sets)
    assert first["status"] == "complete" and first["rows_out"] == 12 and len(first["files"]) == 1

    nothing = score_flow(str(inbox), str(out), [MODEL], None, sets)
    assert nothing["status"] == "nothing new" and not nothing["files"]

    promoted = runner.invoke(app, ["promote", NAME, "2", "--force", "--reason", "score flow test", *cli_sets()])
    assert promoted.exit_code == 0, promoted.output
    pd.DataFrame({"text": sentences(30)[20:27]}).to_csv(inbox / "tuesday.csv", index=False)
    pd.DataFrame({"text": sentences(14)}).to_csv(inbox / "monday.csv", index=False)  # changed in place
    second = score_flow(str(inbox), str(out), [MODEL], None, sets)
    assert second["status"] == "complete" and sorted(Path(f["path"]).name for f in second["files"]) == [
        "monday.csv",
        "tuesday.csv",
    ]
    table = read_scored(out).to_pandas()
    assert len(table) == 12 + 7 + 14 and table["row_id"].is_unique
    assert table.groupby("version").size().to_dict() == {"1": 12, "2": 21}
    assert [r["status"] for r in read_manifest(out)["runs"]] == ["complete", "complete"]
