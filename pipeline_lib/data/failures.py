"""What a broken data rule looks like: one failure per place (file, row, split, rule), and the error that lists
them. Shared by the reader-level, text and tag rules and by the validate step."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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


def snippet(text: Any, width: int = 60) -> str:
    text = "" if pd.isna(text) else str(text)
    return f'"{text[: width - 1]}…"' if len(text) > width else f'"{text}"'


def place(row: pd.Series | dict[str, Any]) -> str:
    return f"{row['source']} row {row['row']}"
