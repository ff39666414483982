"""Step 1, validate: read the labelled data, split it, check it against the task's rules (Great Expectations
per split, pandas across splits), write the report always and the split Parquet files on success.

Every failure names the file, row, split and rule (the rules: `data.text_rules`, `data.tag_rules`,
`data.cross_split`; `data_format` for files that cannot be read).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig, PipelineConfig
from pipeline_lib.data.cross_split import cross_split_duplicates
from pipeline_lib.data.failures import DataValidationError, ValidationFailure
from pipeline_lib.data.readers import DataFormatError, read_data
from pipeline_lib.data.splits import assign_splits
from pipeline_lib.layout import SPLITS, RunDir, write_json
from pipeline_lib.task_types import task_for


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
        leaks = cross_split_duplicates(splits)
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
