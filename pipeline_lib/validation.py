"""The validate step: read the labelled data, split it, check it with Great Expectations, write the splits.

Every failure names the file, row, split and rule. Rules checked per split by GX: `text_not_null`,
`label_not_null`, `label_in_set`, `text_length`, `text_unique_in_split`. Checked in pandas (GX cannot look
across dataframes): `conflicting_labels`, `text_in_two_splits`, `label_in_train`, `split_not_empty`, and
`data_format` for files that cannot be read.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig, PipelineConfig
from pipeline_lib.data.readers import DataFormatError, read_data
from pipeline_lib.data.splits import assign_splits
from pipeline_lib.layout import SPLITS, RunDir, write_json
from pipeline_lib.task_types import task_for

SPLIT_FILE_COLUMNS = ["text", "label", "source", "row"]
MAX_REPORTED = 20


@dataclass
class ValidationFailure:
    """One broken rule at one place in the data (`row` is the line in `file`; None for whole-file rules)."""

    file: str
    row: int | None
    split: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f" row {self.row}" if self.row is not None else "")
        where += f" ({self.split})" if self.split else ""
        return f"{where}: {self.rule} — {self.message}"


class DataValidationError(RuntimeError):
    """The data broke at least one rule; str() lists the failures, `report_path` has them all."""

    def __init__(self, failures: list[ValidationFailure], report_path: str | Path) -> None:
        self.failures, self.report_path = failures, str(report_path)
        by_rule = ", ".join(f"{rule}: {n}" for rule, n in Counter(f.rule for f in failures).items())
        lines = [f"data validation failed: {len(failures)} problem(s) ({by_rule}); report: {self.report_path}"]
        lines += [f"  {failure}" for failure in failures[:MAX_REPORTED]]
        if len(failures) > MAX_REPORTED:
            lines.append(f"  … and {len(failures) - MAX_REPORTED} more")
        super().__init__("\n".join(lines))


@dataclass
class ValidateResult:
    """What the validate step found; written to the run's report and returned on success."""

    passed: bool
    rows: dict[str, int]
    label_counts: dict[str, dict[str, int]]
    dropped_duplicates: int
    report_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(cfg: PipelineConfig, run: RunDir) -> ValidateResult:
    """Validate `cfg.data`: write the report and GX results always, the split Parquet files on success."""
    data = cfg.data
    for split in SPLITS:
        run.split_file(split).unlink(missing_ok=True)
    failures: list[ValidationFailure] = []
    splits: dict[str, pd.DataFrame] = {}
    gx_results: dict[str, Any] = {}
    dropped = 0
    task = task_for(cfg.task)
    warnings: list[ValidationFailure] = []
    try:
        df, dropped, prepare_failures = task.prepare(read_data(data, task.read), data)
        failures += prepare_failures
        splits = assign_splits(df, data.split)
    except DataFormatError as exc:
        failures.append(ValidationFailure(exc.file, exc.row, None, "data_format", str(exc)))
    except FileNotFoundError as exc:
        failures.append(ValidationFailure(data.path, None, None, "data_format", str(exc)))
    if splits:
        splits["train"] = task.limit_train(splits["train"], data, data.split.seed).reset_index(drop=True)
        gx_results, gx_failures = task.check_splits(splits, data)
        leaks = _leakage(splits)
        (warnings if data.cross_split_duplicates == "warn" else failures).extend(leaks)
        failures += gx_failures + task.coverage(splits, data)
    result = ValidateResult(
        passed=not failures,
        rows={name: len(frame) for name, frame in splits.items()},
        label_counts={name: task.label_counts(frame) for name, frame in splits.items()},
        dropped_duplicates=dropped,
        report_path=str(run.validation_report),
    )
    _write_reports(run, result, failures, gx_results, data, warnings)
    if failures:
        raise DataValidationError(failures, run.validation_report)
    for split, frame in splits.items():
        _write_parquet(frame[list(task.split_columns)], run.split_file(split))
    return result


def prepare_texts(df: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, int, list[ValidationFailure]]:
    """Classification texts: drop repeats / conflicting texts as configured, report the remaining conflicts."""
    dropped = 0
    if data.drop_duplicates:
        df, dropped = _drop_duplicates(df)
    if data.drop_conflicting:
        df, dropped_conflicting = _drop_conflicting(df)
        dropped += dropped_conflicting
    return df, dropped, _conflicting_labels(df)


def normalise(text: str) -> str:
    """The key for cross-split comparisons: lowercase with collapsed whitespace."""
    return " ".join(str(text).lower().split())


def _snippet(text: Any, width: int = 60) -> str:
    text = "" if pd.isna(text) else str(text)
    return f'"{text[: width - 1]}…"' if len(text) > width else f'"{text}"'


def _place(row: pd.Series | dict[str, Any]) -> str:
    return f"{row['source']} row {row['row']}"


def _drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    keep = ~df.duplicated(subset=["text", "label"], keep="first")
    return df[keep].reset_index(drop=True), int((~keep).sum())


def _drop_conflicting(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Remove every row of a (normalised) text that carries more than one label."""
    keys = df["text"].map(normalise, na_action="ignore")
    labels_per_text = df.groupby(keys, dropna=True)["label"].nunique()
    conflicted = keys.isin(labels_per_text[labels_per_text > 1].index)
    return df[~conflicted].reset_index(drop=True), int(conflicted.sum())


def _conflicting_labels(df: pd.DataFrame) -> list[ValidationFailure]:
    """Rows whose (normalised) text appeared earlier with another label."""
    labelled = df[df["label"].notna() & df["text"].notna()]
    first: dict[str, dict[str, Any]] = {}
    failures = []
    for row in labelled.to_dict("records"):
        earlier = first.setdefault(normalise(row["text"]), row)
        if earlier["label"] != row["label"]:
            message = (
                f"{_snippet(row['text'])} labelled {row['label']!r} here but {earlier['label']!r} "
                f"at {_place(earlier)}; expected one label per text"
            )
            failures.append(ValidationFailure(row["source"], int(row["row"]), None, "conflicting_labels", message))
    return failures


def _leakage(splits: dict[str, pd.DataFrame]) -> list[ValidationFailure]:
    """Rows whose normalised text already appears in an earlier split (train, then validation, then test)."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    failures = []
    for split in SPLITS:
        for row in splits[split].to_dict("records"):
            if pd.isna(row["text"]) or not str(row["text"]).strip():
                continue
            other_split, other = seen.setdefault(normalise(row["text"]), (split, row))
            if other_split != split:
                message = f"{_snippet(row['text'])} also in {other_split} ({_place(other)})"
                failures.append(ValidationFailure(row["source"], int(row["row"]), split, "text_in_two_splits", message))
    return failures


def _coverage(splits: dict[str, pd.DataFrame], data: DataConfig) -> list[ValidationFailure]:
    failures = []
    for split in SPLITS:
        if splits[split].empty:
            message = "no rows; expected at least one (check data.split fractions or the split column)"
            failures.append(ValidationFailure(data.path, None, split, "split_not_empty", message))
    present = set(splits["train"]["label"].dropna())
    for label in data.labels:
        if label not in present:
            message = f"no row labelled {label!r}; expected every label in data.labels in train"
            failures.append(ValidationFailure(data.path, None, "train", "label_in_train", message))
    return failures


def _expectations(data: DataConfig) -> list[Any]:
    import great_expectations as gx

    ex = gx.expectations
    return [
        ex.ExpectColumnValuesToNotBeNull(column="text", meta={"rule": "text_not_null"}),
        ex.ExpectColumnValuesToNotBeNull(column="label", meta={"rule": "label_not_null"}),
        ex.ExpectColumnValuesToBeInSet(column="label", value_set=data.labels, meta={"rule": "label_in_set"}),
        ex.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=data.min_chars, max_value=data.max_chars, meta={"rule": "text_length"}
        ),
        ex.ExpectColumnValuesToBeUnique(column="text", meta={"rule": "text_unique_in_split"}),
    ]


def _run_gx(splits: dict[str, pd.DataFrame], data: DataConfig) -> tuple[dict[str, Any], list[ValidationFailure]]:
    """Run the expectation suite on each non-empty split in one ephemeral GX context."""
    definition = gx_definition(data.name, _expectations(data))
    results: dict[str, Any] = {}
    failures: list[ValidationFailure] = []
    for split, frame in splits.items():
        if frame.empty:
            continue
        gx_frame = frame[["text", "label"]].assign(text=frame["text"].str.strip())
        outcome = definition.run(batch_parameters={"dataframe": gx_frame}, result_format={"result_format": "COMPLETE"})
        results[split] = outcome.to_json_dict()
        for check in outcome.results:
            if not check.success:
                failures += _gx_failures(check, split, frame, data)
    return results, failures


def gx_definition(name: str, expectations: list[Any]) -> Any:
    """A GX validation definition of `expectations` over a whole pandas DataFrame, in an ephemeral context
    (run it with `batch_parameters={"dataframe": frame}`)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("tunepipe").add_dataframe_asset("splits")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name="validate", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite)
    )


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
            ValidationFailure(row["source"], int(row["row"]), split, rule, _gx_message(rule, row, frame, data))
        )
    return failures


def _gx_message(rule: str, row: pd.Series, frame: pd.DataFrame, data: DataConfig) -> str:
    text, labels = row["text"], ", ".join(data.labels)
    if rule == "text_not_null":
        return "text is missing; expected a text"
    if rule == "label_not_null":
        return f"{_snippet(text)} has no label; expected one of {labels}"
    if rule == "label_in_set":
        return f"label {row['label']!r} is not one of {labels} (data.labels): {_snippet(text)}"
    if rule == "text_length":
        length = len(str(text).strip())
        return f"text has {length} characters; expected {data.min_chars}–{data.max_chars}: {_snippet(text)}"
    if rule == "text_unique_in_split":
        others = frame[(frame["text"] == text) & (frame.index != row.name)]
        also = ", ".join(
            f"row {other['row']}" if other["source"] == row["source"] else _place(other)
            for _, other in others.head(3).iterrows()
        )
        return f"{_snippet(text)} appears {len(others) + 1} times in {row['split']} (also {also})"
    return f"unexpected value {_snippet(text)}"


def _write_reports(
    run: RunDir,
    result: ValidateResult,
    failures: list[ValidationFailure],
    gx_results: dict[str, Any],
    data: DataConfig,
    warnings: list[ValidationFailure] | None = None,
) -> None:
    report = {
        **result.to_dict(),
        "failures": [asdict(failure) for failure in failures],
        "warnings": [asdict(warning) for warning in warnings or []],
        "data": data.model_dump(mode="json"),
    }
    write_json(run.validation_report, report)
    write_json(run.gx_result, gx_results)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (temp file + rename), like layout.write_json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
