"""The tokenized-data cache is shared by every run on the machine: two runs filling the same entry at once
must both end with complete data, and leave one complete entry behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.config import load_config
from pipeline_lib.layout import SPLITS, RunDir, cache_staging_dir, publish_cache_entry
from pipeline_lib.steps import tokenize

ROWS = {
    "train": [("Profit rose sharply in the quarter", "positive"), ("Sales fell", "negative")],
    "validation": [("The company kept its guidance", "neutral")],
    "test": [("Operating loss widened to EUR 3 million", "negative")],
}


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_config(None, ["paths.store=store", "data.labels=[negative, neutral, positive]"])


def validated_run(root: Path) -> RunDir:
    run = RunDir(root)
    for split in SPLITS:
        run.split_file(split).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(ROWS[split], columns=["text", "label"]).to_parquet(run.split_file(split), index=False)
    return run


def test_two_runs_filling_the_same_entry_at_once_both_get_complete_data(cfg, tmp_path, monkeypatch):
    first, second = validated_run(tmp_path / "run1"), validated_run(tmp_path / "run2")
    real_write_json = tokenize.write_json
    interleaved: list[tokenize.TokenizeResult] = []
    started: list[bool] = []

    def second_run_finishes_first(path: Path, payload):
        # The first run has written its Arrow files and is about to mark its entry complete: the second run
        # tokenizes the same data and publishes the same entry in between.
        if path.name == "meta.json" and not started:
            started.append(True)
            interleaved.append(tokenize.tokenize(cfg, second))
        return real_write_json(path, payload)

    monkeypatch.setattr(tokenize, "write_json", second_run_finishes_first)
    result = tokenize.tokenize(cfg, first)

    assert interleaved and interleaved[0].cache_key == result.cache_key and not result.cache_hit
    for run in (first, second):
        data = tokenize.load_tokenized(run)
        assert {split: len(data[split]) for split in SPLITS} == {"train": 2, "validation": 1, "test": 1}
    ids = [list(tokenize.load_tokenized(run)["train"]["input_ids"]) for run in (first, second)]
    assert ids[0] == ids[1] and len(ids[0]) == 2
    entries = sorted(p.name for p in (tmp_path / "store" / "cache" / "tokenized").iterdir())
    assert entries == [result.cache_key]  # no private staging folder left behind

    third = tokenize.tokenize(cfg, validated_run(tmp_path / "run3"))
    assert third.cache_hit and third.rows == result.rows


def test_publish_keeps_a_complete_entry_published_first(tmp_path: Path):
    target = tmp_path / "entry"
    theirs = cache_staging_dir(target)
    (theirs / "done").write_text("theirs")
    ours = cache_staging_dir(target)
    (ours / "done").write_text("ours")
    assert theirs != ours and theirs.parent == ours.parent == tmp_path

    assert publish_cache_entry(theirs, target, marker="done") is True
    assert publish_cache_entry(ours, target, marker="done") is False
    assert (target / "done").read_text() == "theirs" and not ours.exists()


def test_publish_replaces_a_half_entry_and_fails_loudly_otherwise(tmp_path: Path):
    target = tmp_path / "entry"
    target.mkdir()
    (target / "part").write_text("half")  # no marker: an interrupted writer's leftovers
    ours = cache_staging_dir(target)
    (ours / "done").write_text("ours")
    assert publish_cache_entry(ours, target, marker="done") is True
    assert sorted(p.name for p in target.iterdir()) == ["done"]

    with pytest.raises(OSError):
        publish_cache_entry(tmp_path / "never-written", tmp_path / "other", marker="done")


def test_the_summary_counts_every_token_and_every_text_cut_at_max_length(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["paths.store=store", "data.labels=[negative, neutral, positive]", "model.max_length=8"])
    result = tokenize.tokenize(cfg, validated_run(tmp_path / "run"))
    data = tokenize.load_tokenized(RunDir(tmp_path / "run"))
    for split in SPLITS:
        lengths = [len(ids) for ids in data[split]["input_ids"]]
        assert result.tokens[split] == sum(lengths) and result.rows[split] == len(lengths)
        assert result.at_max_length[split] == sum(length == 8 for length in lengths)
    assert result.at_max_length == {"train": 1, "validation": 0, "test": 1}  # the long ones, cut at 8 tokens
