"""Rules across splits, for either task: every split has data (`split_not_empty`), and no text (by its normalised
key) is in two splits (`text_in_two_splits`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.data.failures import ValidationFailure, place, snippet
from pipeline_lib.data.keys import text_key
from pipeline_lib.layout import SPLITS


def empty_splits(splits: dict[str, pd.DataFrame], path: str, hint: str, unit: str = "rows") -> list[ValidationFailure]:
    """One `split_not_empty` failure per split without rows (`unit`: rows or sentences; `hint`: what to check)."""
    return [
        ValidationFailure(path, None, split, "split_not_empty", f"no {unit}; expected at least one ({hint})", split)
        for split in SPLITS
        if splits[split].empty
    ]


def cross_split_duplicates(splits: dict[str, pd.DataFrame]) -> list[ValidationFailure]:
    """Rows whose normalised text already appears in an earlier split (train, then validation, then test)."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    failures = []
    for split in SPLITS:
        for row in splits[split].to_dict("records"):
            if pd.isna(row["text"]) or not str(row["text"]).strip():
                continue
            other_split, other = seen.setdefault(row.get("key") or text_key(row["text"]), (split, row))
            if other_split != split:
                message = f"{snippet(row['text'])} also in {other_split} ({place(other)})"
                pair = f"{other_split} and {split}"
                failures.append(
                    ValidationFailure(row["source"], int(row["row"]), split, "text_in_two_splits", message, pair)
                )
    return failures
