"""Assign rows to train / validation / test: from the data's split column (or split files) as the user gave them,
else by content.

`hash` (the default): a row's split is a pure function of its text's normalised key and `data.split.seed`: the key
is hashed to a number in [0, 1), below `test` goes to test, below `test + validation` to validation, the rest to
train. Adding rows never moves an existing row, and rows with the same key (exact and near duplicates) always
share a split, so a seeded split never leaks and a champion is never re-scored on rows it trained on because the
data grew. The price: the label mix of each split matches the whole only in expectation (binomial noise: about
±2 points of share on a 500-row test split, ±8 on a 36-row one); `label_mix` measures it, and validation warns
when a split's label counts are unlikely under the whole's mix (chi-square, p < `data.split.label_mix_p`): then
another `data.split.seed` gives a more representative split.

`stratified`: scikit-learn's stratified shuffle split over the rows, as benchmarks in the literature draw it (exact
label mix, but every new data version re-draws every row; the gates then compare on unseen rows only).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline_lib.config import SplitConfig
from pipeline_lib.data.keys import text_key, unit_interval
from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.layout import SPLITS

SPLIT_SYNONYMS = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
_MISSING_LABEL = "\x00missing"  # stratum for rows without a label (validation reports them later)


SPLIT_METHODS = {"hash": "hash-v1", "stratified": "stratified-v1", "given": "given"}  # recorded in lineage


def split_method(df: pd.DataFrame, split_cfg: SplitConfig) -> str:
    """How `assign_splits` splits `df`: as the data says (`given`), or by the configured method (versioned)."""
    if "split" in df.columns and df["split"].notna().any():
        return SPLIT_METHODS["given"]
    return SPLIT_METHODS[split_cfg.method]


def assign_splits(df: pd.DataFrame, split_cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Split `df` (reader output) into {"train", "validation", "test"}; each frame's `split` column is set."""
    method = split_method(df, split_cfg)
    if method == SPLIT_METHODS["given"]:
        parts = _from_split_column(df)
    elif method == SPLIT_METHODS["hash"]:
        parts = _by_key_hash(df, split_cfg)
    else:
        parts = _stratified(df, split_cfg)
    return {name: parts[name].assign(split=name).reset_index(drop=True) for name in SPLITS}


def split_of_key(key: str, split_cfg: SplitConfig) -> str:
    """The split a normalised key belongs to under the hash method: a function of the key and the seed alone."""
    u = unit_interval(key, split_cfg.seed)
    if u < split_cfg.test:
        return "test"
    return "validation" if u < split_cfg.test + split_cfg.validation else "train"


def _by_key_hash(df: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    if "key" in df.columns:  # the validate step keyed every row already (None where the text is missing)
        keys = df["key"].where(df["key"].notna(), "")
    else:
        keys = df["text"].map(lambda text: text_key("" if pd.isna(text) else text))
    names = keys.map(lambda key: split_of_key(key, cfg))
    return {name: df[names == name] for name in SPLITS}


def label_mix(splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Each split's share of every label beside the whole data's, and the largest gap in points of share."""
    frames = [frame for frame in splits.values() if "label" in frame.columns]
    if not frames:
        return {}
    labels = pd.concat(frames)["label"].astype(object).fillna("<missing>")
    whole = labels.value_counts(normalize=True)
    mix: dict[str, Any] = {"whole": {str(k): round(float(v), 4) for k, v in sorted(whole.items())}}
    largest = 0.0
    for name, frame in splits.items():
        share = frame["label"].astype(object).fillna("<missing>").value_counts(normalize=True)
        mix[name] = {str(k): round(float(share.get(k, 0.0)), 4) for k in sorted(whole.index)}
        if len(frame):
            largest = max(largest, float((share.reindex(whole.index, fill_value=0.0) - whole).abs().max()))
    mix["max_shift"] = round(largest, 4)
    mix["p_value"] = {name: _mix_p_value(frame, whole) for name, frame in splits.items()}
    return mix


def _mix_p_value(frame: pd.DataFrame, whole: pd.Series) -> float | None:
    """Chi-square goodness of fit of a split's label counts to the whole data's shares (None: empty split)."""
    from scipy.stats import chisquare

    if frame.empty or len(whole) < 2:
        return None
    observed = frame["label"].astype(object).fillna("<missing>").value_counts().reindex(whole.index, fill_value=0)
    return round(float(chisquare(observed.to_numpy(), f_exp=whole.to_numpy() * len(frame)).pvalue), 6)


def _from_split_column(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    names = df["split"].map(lambda value: SPLIT_SYNONYMS.get(str(value).strip().lower()) if pd.notna(value) else None)
    bad = names.isna()
    if bad.any():
        first = df[bad].iloc[0]
        raise DataFormatError(
            first["source"],
            f"unknown split {first['split']!r}" if pd.notna(first["split"]) else "split is empty",
            row=int(first["row"]),
            field="split",
            expected=f"one of {', '.join(SPLIT_SYNONYMS)} (case-insensitive) in every row",
        )
    return {name: df[names == name] for name in SPLITS}


def _stratified(df: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    rest, test = split_off(df, cfg.test, cfg.seed, keep=2)
    train, validation = split_off(rest, cfg.validation / (1 - cfg.test), cfg.seed, keep=1)
    return {"train": train, "validation": validation, "test": test}


def subsample(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """Keep `n_rows` rows (stratified by label when counts allow, seeded), in input order."""
    return df if len(df) <= n_rows else split_off(df, n_rows, seed, keep=0)[1]


def split_off(df: pd.DataFrame, size: float | int, seed: int, keep: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (rest, part), both in input order: `part` holds `size` rows (a fraction or a count).

    Stratified by label when counts allow; a label with more than `keep` rows always reaches `part`.
    """
    df = df.reset_index(drop=True)
    n_part = size if isinstance(size, int) else math.ceil(size * len(df))
    if n_part <= 0:
        return df, df.iloc[:0]
    if n_part >= len(df):
        return df.iloc[:0], df
    if "label" not in df.columns:  # tagged sentences: one stratum
        strata = pd.Series("", index=df.index)
    else:
        strata = df["label"].astype(object).where(df["label"].notna(), _MISSING_LABEL).astype(str)
    counts = strata.value_counts()
    can_stratify = counts.min() >= 2 and min(n_part, len(df) - n_part) >= len(counts)
    rest, part = train_test_split(
        df.index.to_numpy(), test_size=n_part, random_state=seed, stratify=strata if can_stratify else None
    )
    rest, part = _cover_labels(set(rest), set(part), strata, keep, seed)
    return df.loc[sorted(rest)], df.loc[sorted(part)]


def _cover_labels(rest: set[int], part: set[int], strata: pd.Series, keep: int, seed: int) -> tuple[set[int], set[int]]:
    """Swap rows so each label with more than `keep` rows in `rest` has one in `part` (sizes unchanged)."""
    rng = random.Random(seed)
    for label in sorted(set(strata[list(rest)]) - set(strata[list(part)])):
        donors = sorted(i for i in rest if strata[i] == label)
        part_counts = strata[sorted(part)].value_counts()
        if len(donors) <= keep or part_counts.iloc[0] < 2:
            continue
        give = rng.choice(donors)
        back = rng.choice(sorted(i for i in part if strata[i] == part_counts.index[0]))
        rest, part = (rest - {give}) | {back}, (part - {back}) | {give}
    return rest, part
