"""Splits: by a hash of each text's key (default) or stratified and seeded without a split column, taken from the
data with one."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.config import SplitConfig
from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.data.splits import assign_splits, label_mix, split_method, subsample
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
    parts = assign_splits(df, SplitConfig(method="stratified", validation=0.1, test=0.2, seed=1))
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
    first = assign_splits(df, SplitConfig(method="stratified", seed=7))
    again = assign_splits(df, SplitConfig(method="stratified", seed=7))
    other = assign_splits(df, SplitConfig(method="stratified", seed=8))
    for name in SPLITS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert first["test"]["row"].tolist() != other["test"]["row"].tolist()


def test_stratified_every_label_in_every_split_when_counts_allow() -> None:
    parts = assign_splits(_frame({"neutral": 60, "positive": 10, "negative": 3}), SplitConfig(method="stratified"))
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


# --- the hash split (default) ------------------------------------------------------------------------------------


def _texts(n: int, start: int = 0, labels: tuple[str, ...] = ("negative", "neutral", "positive")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"Company {i} reported quarter {i % 7} results" for i in range(start, start + n)],
            "label": [labels[(i * 7) % len(labels)] for i in range(start, start + n)],
            "split": None,
            "source": "data/x.csv",
            "row": range(start + 2, start + n + 2),
        }
    )


def _split_of(parts: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {text: name for name, part in parts.items() for text in part["text"]}


def test_adding_ten_percent_more_rows_moves_no_existing_row() -> None:
    old = _texts(2000)
    grown = pd.concat([old, _texts(200, start=2000)], ignore_index=True)
    before, after = _split_of(assign_splits(old, SplitConfig())), _split_of(assign_splits(grown, SplitConfig()))
    assert all(after[text] == split for text, split in before.items())
    assert len(after) == 2200
    reordered = _split_of(assign_splits(grown.sample(frac=1, random_state=3), SplitConfig()))  # order is irrelevant
    assert reordered == after


def test_near_duplicates_always_share_a_split() -> None:
    variants = [
        "Profit rose 5 %.",
        "PROFIT  rose 5 %.",
        "profit rose\t5 %.",
        "Ｐrofit rose 5 %.",
        "Pro\u200bfit rose 5 %.",
    ]
    frame = pd.concat(
        [_texts(300), pd.DataFrame({"text": variants, "label": "positive", "split": None, "source": "x", "row": 1})],
        ignore_index=True,
    )
    for seed in range(20):
        where = _split_of(assign_splits(frame, SplitConfig(seed=seed)))
        assert len({where[text] for text in variants}) == 1


def test_hash_split_sizes_and_label_mix_stay_within_tolerance() -> None:
    frame = _texts(3000)
    parts = assign_splits(frame, SplitConfig(validation=0.1, test=0.1, seed=42))
    sizes = {name: len(part) for name, part in parts.items()}
    assert sum(sizes.values()) == 3000 and pd.concat(parts.values())["row"].is_unique
    for name, fraction in (("test", 0.1), ("validation", 0.1), ("train", 0.8)):
        assert abs(sizes[name] / 3000 - fraction) < 0.02, sizes  # binomial noise: sd 0.55 points at 3000 rows
    mix = label_mix(parts)
    assert set(mix) == {"whole", "train", "validation", "test", "max_shift", "p_value"}
    for name, part in parts.items():  # the stated tolerance: 4 standard errors of a share on a split of this size
        for label, whole in mix["whole"].items():
            assert abs(mix[name][label] - whole) < 4 * (whole * (1 - whole) / len(part)) ** 0.5, (name, label, mix)
    assert all(p > SplitConfig().label_mix_p for p in mix["p_value"].values())  # no warning: ordinary noise


def test_hash_split_depends_on_the_seed_and_is_deterministic() -> None:
    frame = _texts(500)
    first, again = assign_splits(frame, SplitConfig(seed=1)), assign_splits(frame, SplitConfig(seed=1))
    assert _split_of(first) == _split_of(again)
    assert _split_of(first) != _split_of(assign_splits(frame, SplitConfig(seed=2)))
    assert split_method(frame, SplitConfig()) == "hash-v1"
    assert split_method(frame.assign(split="train"), SplitConfig()) == "given"
