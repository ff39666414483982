"""The prediction log: one record per prediction, no raw text unless asked, size rotation with retention, a window
read across rotated files, and appends from several writers at once losing nothing."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline_lib.config import ConfigError, ServeConfig, load_config
from pipeline_lib.serving.prediction_log import (
    CURRENT,
    PredictionLog,
    log_folder,
    read_log,
    rotated_files,
    text_sha256,
)

TEXTS = ["Profit rose 5%.", "The AGM will be held in May."]
PREDICTIONS = [
    {"text": TEXTS[0], "label": "positive", "probabilities": {"negative": 0.1, "neutral": 0.2, "positive": 0.7}},
    {"text": TEXTS[1], "label": "neutral", "probabilities": {"negative": 0.2, "neutral": 0.5, "positive": 0.3}},
]


def test_records_hold_hash_length_label_and_confidence_but_no_text(tmp_path: Path):
    log = PredictionLog(tmp_path / "log", ServeConfig())
    assert log.append("fs", "3", TEXTS, PREDICTIONS) == 2
    frame = read_log(tmp_path / "log")
    assert list(frame["label"]) == ["positive", "neutral"] and list(frame["confidence"]) == [0.7, 0.5]
    assert list(frame["text_sha256"]) == [text_sha256(t) for t in TEXTS]
    assert list(frame["chars"]) == [15, 28] and list(frame["words"]) == [3, 7]
    assert set(frame["model"]) == {"fs"} and set(frame["version"]) == {"3"}
    assert frame["text"].isna().all()
    assert (datetime.now(timezone.utc) - frame["time"].iloc[0]).total_seconds() < 60
    raw = (tmp_path / "log" / CURRENT).read_bytes()
    assert TEXTS[0].encode() not in raw and TEXTS[1].encode() not in raw


def test_raw_texts_only_with_log_texts(tmp_path: Path):
    PredictionLog(tmp_path, ServeConfig(log_texts=True)).append("fs", "1", TEXTS, PREDICTIONS)
    assert list(read_log(tmp_path)["text"]) == TEXTS


def test_token_classification_records_have_no_label_and_the_lowest_entity_score(tmp_path: Path):
    ner = [{"text": "EU rejects", "entities": [{"score": 0.9}, {"score": 0.6}]}, {"text": "x", "entities": []}]
    PredictionLog(tmp_path, ServeConfig()).append("ner", "1", ["EU rejects", "x"], ner)
    frame = read_log(tmp_path)
    assert frame["label"].isna().all() and frame["confidence"].iloc[0] == 0.6 and frame["confidence"].isna().iloc[1]


def test_rotation_by_size_keeps_the_newest_files_and_reads_across_them(tmp_path: Path):
    log = PredictionLog(tmp_path, ServeConfig(log_rotate_mb=0.02, log_keep=2))  # ~20 KB per file
    for _ in range(40):
        log.append("fs", "1", TEXTS * 10, PREDICTIONS * 10)
    rotated = rotated_files(tmp_path)
    assert len(rotated) == 2, "older rotated files are deleted"
    files = [*rotated, tmp_path / CURRENT] if (tmp_path / CURRENT).exists() else rotated
    total = sum(sqlite3.connect(p).execute("SELECT COUNT(*) FROM predictions").fetchone()[0] for p in files)
    frame = read_log(tmp_path)
    assert len(frame) == total < 800 and frame["time"].is_monotonic_increasing


def test_window_start_filters_records(tmp_path: Path):
    log = PredictionLog(tmp_path, ServeConfig())
    log.append("fs", "1", TEXTS, PREDICTIONS)
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert len(read_log(tmp_path, since=later)) == 0
    assert len(read_log(tmp_path, since=later - timedelta(hours=1))) == 2


def test_concurrent_writers_on_one_folder_lose_nothing(tmp_path: Path):
    logs = [PredictionLog(tmp_path, ServeConfig(log_rotate_mb=0.01)) for _ in range(2)]  # two "servers"
    threads = [
        threading.Thread(target=lambda log=log: [log.append("fs", "1", TEXTS, PREDICTIONS) for _ in range(25)])
        for log in logs
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_log(tmp_path)) == 2 * 2 * 25 * 2


def test_an_unwritable_folder_is_refused_at_start_naming_the_option(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"serve\.log_path: cannot write the prediction log in .*serve\.log: false"):
        PredictionLog(tmp_path / "file" / "log", ServeConfig())


def test_folder_defaults_under_the_store_and_follows_log_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert log_folder(load_config(None)) == tmp_path / ".tunepipe" / "predictions"
    assert log_folder(load_config(None, ["serve.log_path=logs/p"])) == tmp_path / "logs" / "p"
    assert PredictionLog.for_config(load_config(None, ["serve.log=false"])) is None


def test_background_writer_keeps_requests_off_the_disk_and_writes_on_close(tmp_path: Path):
    log = PredictionLog(tmp_path, ServeConfig(), flush_s=60)  # nothing flushes by itself during the test
    log.append("fs", "1", TEXTS, PREDICTIONS)
    assert len(read_log(tmp_path)) == 0, "queued, not yet written"
    log.close()
    assert len(read_log(tmp_path)) == 2


def test_background_writer_survives_a_disk_that_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    log = PredictionLog(tmp_path, ServeConfig(), flush_s=60)
    log.append("fs", "1", TEXTS, PREDICTIONS)
    (tmp_path / CURRENT).unlink()
    (tmp_path / CURRENT).mkdir()  # sqlite cannot open a folder
    assert log.flush() == 0
    assert "could not write 2 predictions" in caplog.text
    log.close()
