"""Validation with real Great Expectations: failures name file, row, split and rule; reports always kept."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import pipeline_lib
from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.layout import SPLITS, RunDir
from pipeline_lib.steps.validate import ValidateResult, validate

SAMPLE = Path(pipeline_lib.__file__).parent / "resources" / "financial_sentiment_sample.csv"
FPB = Path(__file__).parents[3].parent / "shared" / "data" / "financial_phrasebank"
LABELS = ("negative", "neutral", "positive")


def _rows(per_label: int = 8) -> list[dict[str, str]]:
    """Valid rows with a split column: per label 6 train, 1 validation, the rest test."""
    return [
        {
            "text": f"Sentence {i} about a {label} quarter.",
            "label": label,
            "split": "train" if i < 6 else "validation" if i == 6 else "test",
        }
        for i in range(per_label)
        for label in LABELS
    ]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _line(index: int) -> int:
    """The CSV line of rows[index] (the header is line 1)."""
    return index + 2


def _validate(tmp_path: Path, rows: list[dict[str, str]] | None = None, **data: Any) -> ValidateResult:
    path = _write_csv(tmp_path / "x.csv", rows) if rows is not None else data.pop("path")
    cfg = PipelineConfig.model_validate({"data": {"path": str(path), "labels": LABELS, **data}})
    return validate(cfg, RunDir(tmp_path / "run"))


def _failure(tmp_path: Path, rows: list[dict[str, str]] | None = None, **data: Any) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        _validate(tmp_path, rows, **data)
    run = RunDir(tmp_path / "run")
    report = json.loads(run.validation_report.read_text())
    assert report["passed"] is False and len(report["failures"]) == len(info.value.failures)
    assert run.gx_result.is_file()
    assert not any(run.split_file(split).exists() for split in SPLITS)
    return info.value


def _rules(error: DataValidationError) -> set[str]:
    return {failure.rule for failure in error.failures}


def _each(error: DataValidationError) -> str:
    """Every failure on a line of its own, as the report lists them (the message groups them by cause)."""
    return "\n".join(str(failure) for failure in error.failures)


def test_packaged_sample_passes_and_writes_splits(tmp_path: Path) -> None:
    result = _validate(tmp_path, path=SAMPLE, split={"seed": 28})  # the seed of configs/default.yaml
    run = RunDir(tmp_path / "run")
    assert result.passed and sum(result.rows.values()) == 360 and result.dropped_duplicates == 0
    assert result.split_method == "hash-v1"
    assert result.label_counts["test"] == {"negative": 14, "neutral": 12, "positive": 13}
    assert min(result.label_mix["p_value"].values()) > 0.5
    train = pd.read_parquet(run.split_file("train"))
    assert list(train.columns) == ["text", "label", "source", "row"] and len(train) == result.rows["train"]
    report = json.loads(run.validation_report.read_text())
    assert report["passed"] is True and report["failures"] == [] and report["data"]["path"] == str(SAMPLE)
    gx_result = json.loads(run.gx_result.read_text())
    assert set(gx_result) == set(SPLITS) and all(gx_result[s]["success"] for s in SPLITS)
    assert result.to_dict()["report_path"] == str(run.validation_report)


def test_an_unrepresentative_split_is_a_warning_that_names_the_seed(tmp_path: Path) -> None:
    result = _validate(tmp_path, path=SAMPLE, split={"seed": 42}, label_issues="off")  # 17 of 24 test rows positive
    assert result.passed and result.label_counts["test"] == {"negative": 4, "neutral": 3, "positive": 17}
    warnings = json.loads(RunDir(tmp_path / "run").validation_report.read_text())["warnings"]
    assert [(w["rule"], w["split"]) for w in warnings] == [("label_mix", "test")]
    assert "'positive' is 70.8% of test but 33.3% of the data" in warnings[0]["message"]
    assert "another data.split.seed" in warnings[0]["message"]


def test_unknown_label(tmp_path: Path) -> None:
    rows = _rows()
    rows[4]["label"] = "bullish"
    error = _failure(tmp_path, rows)
    assert f"x.csv row {_line(4)} (train): label_in_set — label 'bullish' is not one of" in _each(error)


def test_empty_and_missing_values(tmp_path: Path) -> None:
    rows = _rows()
    rows[1]["text"], rows[2]["label"] = "   ", ""
    error = _failure(tmp_path, rows)
    message = _each(error)
    assert f"x.csv row {_line(1)} (train): text_length — text has 0 characters; expected 1–2000" in message
    assert f"x.csv row {_line(2)} (train): label_not_null" in message


def test_test_sentence_also_in_train(tmp_path: Path) -> None:
    rows = _rows()
    rows[-1] = {**rows[-1], "text": "  " + rows[0]["text"].upper() + "  ", "label": rows[0]["label"]}
    error = _failure(tmp_path, rows)
    assert _rules(error) == {"text_in_two_splits"}
    expected = f'x.csv row {_line(len(rows) - 1)} (test): text_in_two_splits — "SENTENCE 0 ABOUT'
    assert expected in _each(error) and f"also in train ({tmp_path / 'x.csv'} row {_line(0)})" in _each(error)


def test_duplicates_fail_unless_dropped(tmp_path: Path) -> None:
    rows = _rows()
    rows.insert(5, dict(rows[0]))
    error = _failure(tmp_path, rows)
    assert _rules(error) == {"text_unique_in_split"}
    assert f"x.csv row {_line(5)} (train): text_unique_in_split" in _each(error)
    assert f"appears 2 times in train (also row {_line(0)})" in _each(error)

    result = _validate(tmp_path, rows, drop_duplicates=True)
    assert result.dropped_duplicates == 1 and result.rows["train"] == 18


def test_conflicting_labels_always_fail(tmp_path: Path) -> None:
    rows = _rows()
    rows[3] = {**rows[0], "label": "positive"}
    error = _failure(tmp_path, rows, drop_duplicates=True)
    assert f"x.csv row {_line(3)}: conflicting_labels" in _each(error)
    assert f"labelled 'positive' here but 'negative' at {tmp_path / 'x.csv'} row {_line(0)}" in _each(error)


def test_too_long_text(tmp_path: Path) -> None:
    rows = _rows()
    rows[7]["text"] = "Revenue " * 10
    error = _failure(tmp_path, rows, max_chars=60)
    assert f"x.csv row {_line(7)} (train): text_length — text has 79 characters; expected 1–60" in _each(error)


def test_missing_label_in_train_and_empty_split(tmp_path: Path) -> None:
    rows = [row for row in _rows() if not (row["label"] == "neutral" and row["split"] == "train")]
    rows = [row for row in rows if row["split"] != "validation"]
    assert _rules(_failure(tmp_path, rows)) == {"label_in_train", "split_not_empty"}


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"text,label\nCaf\xe9,neutral\n")
    error = _failure(tmp_path, path=tmp_path / "bad.csv")
    assert error.failures[0].rule == "data_format" and error.failures[0].row == 2
    assert "expected UTF-8" in _each(error)


def test_failure_removes_stale_split_files(tmp_path: Path) -> None:
    rows = _rows()
    _validate(tmp_path, rows)
    assert RunDir(tmp_path / "run").split_file("train").is_file()
    rows[0]["label"] = "?"
    _failure(tmp_path, rows)


def test_message_says_each_cause_once_with_its_fix(tmp_path: Path) -> None:
    rows = [{**row, "label": "?"} for row in _rows()]
    rows[0]["label"] = "bullish"
    error = _failure(tmp_path, rows)
    lines = str(error).splitlines()
    assert str(error.report_path) in lines[0] and f"{len(error.failures)} problem(s) of 5 kind(s)" in lines[0]
    first = next(i for i, line in enumerate(lines) if "rows labelled '?'" in line)
    assert lines[first].strip().startswith(f"{len(rows) - 1} rows labelled '?', which is not a known label")
    assert (
        f"[label_in_set], e.g. {tmp_path / 'x.csv'} row {_line(1)}, row {_line(2)}, row {_line(3)} and " in lines[first]
    )
    assert lines[first + 1].strip() == (
        "fix: add it to data.labels, or leave data.labels out to use the labels of the training split"
    )
    assert sum("rows labelled 'bullish'" in line for line in lines) == 1  # its own cause
    assert sum("labels with no training row" in line for line in lines) == 3  # one per missing label
    assert len(lines) == 1 + 2 * 5
    report = json.loads(RunDir(tmp_path / "run").validation_report.read_text())
    assert len(report["failures"]) == len(error.failures) and report["causes"][0]["count"] == len(rows) - 1


def test_labels_are_inferred_from_train_and_others_name_their_place(tmp_path: Path) -> None:
    rows = _rows()
    result = _validate(tmp_path, rows, labels=None)
    assert result.labels == sorted(LABELS) and result.labels_inferred
    report = json.loads(RunDir(tmp_path / "run").validation_report.read_text())
    assert report["labels"] == sorted(LABELS) and report["data"]["inferred_labels"] == sorted(LABELS)
    rows[-1]["label"] = "mixed"  # a test row with a label train never has
    error = _failure(tmp_path, rows, labels=None)
    assert f"x.csv row {_line(len(rows) - 1)} (test): label_in_set — label 'mixed' is not one of" in _each(error)
    assert "(the labels inferred from the training split (data.labels unset))" in _each(error)


def test_a_single_training_label_cannot_be_a_classifier(tmp_path: Path) -> None:
    rows = [{**row, "label": "positive"} for row in _rows()]
    error = _failure(tmp_path, rows, labels=None)
    assert _rules(error) == {"single_label"} and "the training split has 1 label(s) (positive)" in str(error)


def test_max_train_rows_subsamples_train(tmp_path: Path) -> None:
    result = _validate(tmp_path, _rows(), max_train_rows=9)
    assert result.rows == {"train": 9, "validation": 3, "test": 3}
    assert result.label_counts["train"] == {"negative": 3, "neutral": 3, "positive": 3}


@pytest.mark.skipif(not (FPB / "Sentences_AllAgree.txt").is_file(), reason="Financial PhraseBank not present")
def test_real_phrasebank(tmp_path: Path) -> None:
    result = _validate(tmp_path, path=FPB / "Sentences_AllAgree.txt", drop_duplicates=True)
    assert result.dropped_duplicates == 5 and sum(result.rows.values()) == 2264 - 5
    error = _failure(tmp_path, path=FPB / "Sentences_50Agree.txt", drop_duplicates=True)
    conflicts = [f.row for f in error.failures if f.rule == "conflicting_labels"]
    assert conflicts == [80, 790]


def test_relative_path_resolves_against_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows()
    rows[0]["label"] = "?"
    _write_csv(tmp_path / "x.csv", rows)
    monkeypatch.chdir(tmp_path)
    error = _failure(tmp_path, path="x.csv")
    assert str(error.failures[0]).startswith(f"x.csv row {_line(0)} (train): label_in_set")


def test_directory_input_names_each_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = _rows()
    _write_csv(data / "a.csv", rows)
    _write_csv(data / "b.csv", [{**rows[0], "split": "train"}])
    error = _failure(tmp_path, path=data)
    assert str(error.failures[0]) == (
        f'{data / "a.csv"} row 2 (train): text_unique_in_split — "Sentence 0 about a negative quarter." '
        f"appears 2 times in train (also {data / 'b.csv'} row 2)"
    )


WORKER_SCRIPT = """
import json, sys
from pipeline_lib.data import gx_worker
started = gx_worker.start()  # a fresh process: neither Prefect nor GX imported yet
from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.layout import RunDir
from pipeline_lib.steps.validate import validate
try:
    validate(PipelineConfig.model_validate(json.loads(sys.argv[1])), RunDir(sys.argv[2]))
    failures = []
except DataValidationError as error:
    failures = [str(failure) for failure in error.failures]
print(json.dumps({"started": started, "failures": failures, "gx_here": "great_expectations" in sys.modules,
                  "worker_left": gx_worker.started()}))
"""


def test_suites_in_the_gx_worker_report_what_they_report_here(tmp_path: Path) -> None:
    """`tunepipe run` imports Great Expectations in a forked worker on the other core and runs validate's suites
    there: the same failures, row for row, as in this process, GX never imported by the command itself, and the
    worker gone after the one validation."""
    import subprocess
    import sys

    from pipeline_lib.data import gx_worker

    rows = _rows()
    rows.insert(5, dict(rows[0]))  # a duplicate in train: the GX suite's text_unique_in_split
    rows[9]["text"] = "   "  # and an empty text: text_length
    path = _write_csv(tmp_path / "x.csv", rows)
    config = {"data": {"path": str(path), "labels": LABELS}, "paths": {"store": str(tmp_path / "store")}}
    here = _failure(tmp_path, rows)
    assert _rules(here) == {"text_unique_in_split", "text_length"}
    assert not gx_worker.start()  # never in a process that imported Prefect (threads): the tests run suites here
    repo = Path(pipeline_lib.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "TUNEPIPE_GX_WORKER": "1"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, json.dumps(config), str(tmp_path / "run-worker")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    worker = json.loads(out.stdout.strip().splitlines()[-1])
    if not worker["started"]:
        pytest.skip("one usable core or not Linux: the suites run in the command's own process")
    assert worker["failures"] == [str(failure) for failure in here.failures]
    assert not worker["gx_here"] and not worker["worker_left"]
