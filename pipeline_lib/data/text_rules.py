"""Validation rules for labelled texts (sequence classification), naming file, row, split and rule.

Per split, by Great Expectations: `text_not_null`, `label_not_null`, `label_in_set`, `text_length`,
`text_unique_in_split`. In pandas (GX cannot look across dataframes): `conflicting_labels` (one text, two labels),
`label_in_train`, `split_not_empty`. Also the fixes the config asks for: `drop_duplicates`, `drop_conflicting`.
"The same text" is always the normalised key of `data.keys` (the `key` column the validate step adds).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig
from pipeline_lib.data.cross_split import empty_splits
from pipeline_lib.data.failures import ValidationFailure, place, snippet
from pipeline_lib.data.gx import gx_definition, import_gx
from pipeline_lib.data.keys import text_key


def prepare_texts(df: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, int, list[ValidationFailure]]:
    """Classification texts: drop repeats / conflicting texts as configured, report the remaining conflicts."""
    dropped = 0
    if data.drop_duplicates:
        df, dropped = _drop_duplicates(df)
    if data.drop_conflicting:
        df, dropped_conflicting = _drop_conflicting(df)
        dropped += dropped_conflicting
    return df, dropped, _conflicting_labels(df)


def keyed(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its `key` column (the normalised text; None where the text is missing)."""
    return df if "key" in df.columns else df.assign(key=df["text"].map(text_key, na_action="ignore"))


def _drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first row of each (key, label): exact repeats and near-duplicates (case, spacing, width)."""
    df = keyed(df)
    keep = ~df.duplicated(subset=["key", "label"], keep="first") | df["key"].isna()
    return df[keep].reset_index(drop=True), int((~keep).sum())


def _drop_conflicting(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Remove every row of a (normalised) text that carries more than one label."""
    df = keyed(df)
    labels_per_text = df.groupby("key", dropna=True)["label"].nunique()
    conflicted = df["key"].isin(labels_per_text[labels_per_text > 1].index)
    return df[~conflicted].reset_index(drop=True), int(conflicted.sum())


def _conflicting_labels(df: pd.DataFrame) -> list[ValidationFailure]:
    """Rows whose (normalised) text appeared earlier with another label."""
    labelled = keyed(df)[df["label"].notna() & df["text"].notna()]
    first: dict[str, dict[str, Any]] = {}
    failures = []
    for row in labelled.to_dict("records"):
        earlier = first.setdefault(row["key"], row)
        if earlier["label"] != row["label"]:
            message = (
                f"{snippet(row['text'])} labelled {row['label']!r} here but {earlier['label']!r} "
                f"at {place(earlier)}; expected one label per text"
            )
            failures.append(ValidationFailure(row["source"], int(row["row"]), None, "conflicting_labels", message))
    return failures


def label_coverage(splits: dict[str, pd.DataFrame], data: DataConfig) -> list[ValidationFailure]:
    failures = empty_splits(splits, data.path, "check data.split fractions or the split column")
    present = set(splits["train"]["label"].dropna())
    for label in data.label_names:
        if label not in present:
            message = f"no row labelled {label!r}; expected every label in data.labels in train"
            failures.append(ValidationFailure(data.path, None, "train", "label_in_train", message, label))
    return failures


def _expectations(data: DataConfig) -> list[Any]:
    gx = import_gx()

    ex = gx.expectations
    return [
        ex.ExpectColumnValuesToNotBeNull(column="text", meta={"rule": "text_not_null"}),
        ex.ExpectColumnValuesToNotBeNull(column="label", meta={"rule": "label_not_null"}),
        ex.ExpectColumnValuesToBeInSet(column="label", value_set=data.label_names, meta={"rule": "label_in_set"}),
        ex.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=data.min_chars, max_value=data.max_chars, meta={"rule": "text_length"}
        ),
        ex.ExpectColumnValuesToBeUnique(column="key", meta={"rule": "text_unique_in_split"}),
    ]


def check_text_splits(
    splits: dict[str, pd.DataFrame], data: DataConfig
) -> tuple[dict[str, Any], list[ValidationFailure]]:
    """Run the expectation suite on each non-empty split in one ephemeral GX context."""
    definition = gx_definition(data.name, _expectations(data))
    results: dict[str, Any] = {}
    failures: list[ValidationFailure] = []
    for split, frame in splits.items():
        if frame.empty:
            continue
        frame = keyed(frame)
        gx_frame = frame[["text", "label", "key"]].assign(text=frame["text"].str.strip())
        outcome = definition.run(batch_parameters={"dataframe": gx_frame}, result_format={"result_format": "COMPLETE"})
        results[split] = outcome.to_json_dict()
        for check in outcome.results:
            if not check.success:
                failures += _gx_failures(check, split, frame, data)
    return results, failures


def _gx_failures(check: Any, split: str, frame: pd.DataFrame, data: DataConfig) -> list[ValidationFailure]:
    """Map one failed expectation's unexpected rows back to file/row failures."""
    rule = check.expectation_config.meta.get("rule", check.expectation_config.type)
    if check.exception_info.get("raised_exception"):
        message = f"Great Expectations raised: {check.exception_info.get('exception_message')}"
        return [ValidationFailure(data.path, None, split, rule, message)]
    failures = []
    for index in check.result.get("unexpected_index_list") or []:
        row = frame.loc[index]
        failures.append(
            ValidationFailure(
                row["source"],
                int(row["row"]),
                split,
                rule,
                _gx_message(rule, row, frame, data),
                _value(rule, row, data),
            )
        )
    return failures


def _value(rule: str, row: pd.Series, data: DataConfig) -> str | None:
    """What failures of one cause share, for the grouped report: the unknown label, too long or too short."""
    if rule == "label_in_set":
        return str(row["label"])
    if rule == "text_length":
        return (
            "longer than data.max_chars"
            if len(str(row["text"]).strip()) > data.max_chars
            else "shorter than data.min_chars"
        )
    return None


def _gx_message(rule: str, row: pd.Series, frame: pd.DataFrame, data: DataConfig) -> str:
    text, labels = row["text"], ", ".join(data.label_names)
    if rule == "text_not_null":
        return "text is missing; expected a text"
    if rule == "label_not_null":
        return f"{snippet(text)} has no label; expected one of {labels}"
    if rule == "label_in_set":
        return f"label {row['label']!r} is not one of {labels} ({data.labels_source}): {snippet(text)}"
    if rule == "text_length":
        length = len(str(text).strip())
        return f"text has {length} characters; expected {data.min_chars}–{data.max_chars}: {snippet(text)}"
    if rule == "text_unique_in_split":
        others = frame[(frame["key"] == row["key"]) & (frame.index != row.name)]
        also = ", ".join(
            f"row {other['row']}" if other["source"] == row["source"] else place(other)
            for _, other in others.head(3).iterrows()
        )
        return f"{snippet(text)} appears {len(others) + 1} times in {row['split']} (also {also})"
    return f"unexpected value {snippet(text)}"
