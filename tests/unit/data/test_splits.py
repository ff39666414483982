"""Splits: stratified and seeded without a split column, taken from the data with one."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.config import SplitConfig
from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.data.splits import assign_splits, subsample
from pipeline_lib.layout import SPLITS


def _frame(counts: dict[str, int], split: list[str | None] | None = None) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "text": [f"sentence {i}" for i in range(len(labels))],
            "label": labels,
            "split": split if split is not None else [None] * len(labels),
            "source": "data/x.csv",
            "row": range(2, len(labels) + 2),
        }
    )


def test_stratified_split_sizes_labels_and_partition() -> None:
    df = _frame({"neutral": 150, "positive": 100, "negative": 50})
    parts = assign_splits(df, SplitConfig(validation=0.1, test=0.2, seed=1))
    assert tuple(parts) == SPLITS
    assert {name: len(part) for name, part in parts.items()} == {"train": 210, "validation": 30, "test": 60}
    assert parts["test"]["label"].value_counts().to_dict() == {"neutral": 30, "positive": 20, "negative": 10}
    assert parts["validation"]["label"].value_counts().to_dict() == {
        "neutral": 15,
        "positive": 10,
        "negative": 5,
    }
    rows = pd.concat(parts.values())["row"]
    assert sorted(rows) == sorted(df["row"]) and rows.is_unique
    for name, part in parts.items():
        assert part.index.tolist() == list(range(len(part)))
        assert (part["split"] == name).all()


def test_stratified_split_is_deterministic_for_a_seed() -> None:
    df = _frame({"neutral": 40, "positive": 30, "negative": 20})
    first, again = assign_splits(df, SplitConfig(seed=7)), assign_splits(df, SplitConfig(seed=7))
    other = assign_splits(df, SplitConfig(seed=8))
    for name in SPLITS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert first["test"]["row"].tolist() != other["test"]["row"].tolist()


def test_every_label_in_every_split_when_counts_allow() -> None:
    parts = assign_splits(_frame({"neutral": 60, "positive": 10, "negative": 3}), SplitConfig())
    for part in parts.values():
        assert set(part["label"]) == {"neutral", "positive", "negative"}


def test_rare_label_and_missing_labels_do_not_break_the_split() -> None:
    df = _frame({"neutral": 20, "positive": 10, "negative": 1})
    df.loc[3, "label"] = None
    parts = assign_splits(df, SplitConfig())
    assert sum(len(part) for part in parts.values()) == len(df)


def test_split_column_with_synonyms() -> None:
    values = ["Train", "dev", "VAL", " valid ", "test", "train"]
    parts = assign_splits(_frame({"neutral": 3, "positive": 3}, values), SplitConfig())
    assert parts["train"]["row"].tolist() == [2, 7]
    assert parts["validation"]["row"].tolist() == [3, 4, 5]
    assert parts["test"]["row"].tolist() == [6]
    assert (parts["validation"]["split"] == "validation").all()


@pytest.mark.parametrize(("bad", "problem"), [("holdout", "unknown split 'holdout'"), (None, "split is empty")])
def test_unknown_or_missing_split_value_names_file_and_row(bad: str | None, problem: str) -> None:
    df = _frame({"neutral": 2, "positive": 2}, ["train", "test", bad, "train"])
    with pytest.raises(DataFormatError, match=rf"data/x\.csv, row 4, field 'split': {problem}; expected one of"):
        assign_splits(df, SplitConfig())


def test_subsample_is_stratified_seeded_and_keeps_order() -> None:
    df = _frame({"neutral": 60, "positive": 30, "negative": 10})
    sample = subsample(df, 50, seed=3)
    assert sample["label"].value_counts().to_dict() == {"neutral": 30, "positive": 15, "negative": 5}
    assert sample["row"].is_monotonic_increasing
    pd.testing.assert_frame_equal(sample, subsample(df, 50, seed=3))
    assert subsample(df, 500, seed=3) is df
