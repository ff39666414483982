"""Assign rows to train / validation / test: from the data's split column, else a stratified seeded split."""

from __future__ import annotations

import math
import random

import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline_lib.config import SplitConfig
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


def assign_splits(df: pd.DataFrame, split_cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Split `df` (reader output) into {"train", "validation", "test"}; each frame's `split` column is set."""
    if "split" in df.columns and df["split"].notna().any():
        parts = _from_split_column(df)
    else:
        parts = _stratified(df, split_cfg)
    return {name: parts[name].assign(split=name).reset_index(drop=True) for name in SPLITS}


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
