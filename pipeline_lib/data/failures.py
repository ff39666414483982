"""What a broken data rule looks like: one failure per place (file, row, split, rule), the error that reports them
grouped by cause, and the catalogue that says, per rule, what the failures are and which option fixes them.
Shared by the reader-level, text and tag rules and by the validate step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

EXAMPLES = 3  # places shown per group; every failure is in the report file

# rule -> (what the failing rows are, how to fix them); "{value}" is the group's value (a label, a tag, ...)
RULES: dict[str, tuple[str, str]] = {
    "data_format": ("file or row that cannot be read", "fix the file as the message says"),
    "text_not_null": ("rows without a text", "fill in or remove those rows"),
    "label_not_null": ("rows without a label", "fill in or remove those rows"),
    "label_in_set": (
        "rows labelled {value}, which is not a known label",
        "add it to data.labels, or leave data.labels out to use the labels of the training split",
    ),
    "text_length": (
        "texts {value}",
        "change data.min_chars / data.max_chars, or remove those rows",
    ),
    "text_unique_in_split": (
        "texts that appear more than once in a split (the same text after case, spacing and width folding)",
        "set data.drop_duplicates=true to keep the first of each",
    ),
    "conflicting_labels": (
        "texts with two labels (the same text after case, spacing and width folding)",
        "set data.drop_conflicting=true to drop them, or correct the labels",
    ),
    "text_in_two_splits": (
        "texts in two splits ({value})",
        "the given splits share them: remove the repeats, or set data.cross_split_duplicates=warn to keep the splits "
        "as given (reported, not failed)",
    ),
    "label_in_train": (
        "labels with no training row ({value})",
        "add training rows for it, or leave data.labels out to use the labels the training split has",
    ),
    "single_label": ("training split with one label only ({value})", "a classifier needs at least two labels"),
    "split_not_empty": ("empty splits ({value})", "give more rows, larger data.split fractions or a split column"),
    "tokens_tags_length": ("sentences whose tokens and tags differ in number", "give one tag per token"),
    "sentence_not_empty": ("sentences without tokens", "remove them"),
    "sentence_length": ("sentences longer than data.max_tokens words", "raise data.max_tokens or split them"),
    "tag_in_set": (
        "tokens tagged {value}, which is not a known tag",
        "add it to data.labels, or leave data.labels out to use the tags of the training split (O, B-TYPE, I-TYPE)",
    ),
    "tag_iob2": (
        "I- tags that do not continue an entity",
        "set data.tag_scheme=iob1 for IOB1 files such as CoNLL-2003, or start each entity with B-",
    ),
    "token_not_blank": ("empty or blank tokens", "remove them"),
    "text_mojibake": (
        "texts that look like mojibake (text decoded with the wrong encoding, e.g. 'â€™' for '’')",
        "set data.fix_text=true to repair them (ftfy)",
    ),
    "text_control_chars": ("texts with control characters", "set data.fix_text=true to remove them"),
    "text_replacement_char": (
        "texts with U+FFFD replacement characters (bytes already lost before this file was written)",
        "re-export the data from its source as UTF-8; data.fix_text cannot restore them",
    ),
    "label_mix": ("splits whose label mix is unlikely under the whole data's", "try another data.split.seed"),
    "label_issue": (
        "rows whose label looks wrong ({value}) to a classifier that never saw them (confident learning)",
        "check and correct those labels; data.label_issues=drop removes them from train and validation before "
        "training (never from test), data.label_issues=off skips the check",
    ),
}


@dataclass
class ValidationFailure:
    """One broken rule at one place in the data (`row` is the line in `file`; None for whole-file rules).
    `value` is what failures of one cause share (the unknown label, the tag, ...), for grouping. `more` counts the
    further places of the same cause that this one stands for, not listed one by one (a rule that caps its examples,
    such as damaged text, folds the rest into its last listed failure), so that every count stays exact."""

    file: str
    row: int | None
    split: str | None
    rule: str
    message: str
    value: str | None = None
    more: int = 0

    def __str__(self) -> str:
        return f"{self.place()}: {self.rule} — {self.message}"

    def place(self) -> str:
        where = self.file + (f" row {self.row}" if self.row is not None else "")
        return where + (f" ({self.split})" if self.split else "")


@dataclass
class FailureGroup:
    """Failures of one rule and value: how many, where the first few are, and the fix."""

    rule: str
    value: str | None
    failures: list[ValidationFailure]

    @property
    def count(self) -> int:
        """Every place of this cause, listed or not (`ValidationFailure.more`)."""
        return count_places(self.failures)

    def line(self) -> str:
        what, fix = RULES.get(self.rule, (f"{self.rule} failures", "see the report"))
        if self.rule.startswith("drift_"):
            feature = self.rule.removeprefix("drift_")
            what = f"{feature} drift of the training data from the champion's"
            fix = f"if the data is right, raise gates.drift.{feature}.max or set gates.drift.{feature}.action=warn"
        what = what.format(value=repr(self.value) if self.value is not None else "")
        shown = self.failures[:EXAMPLES]
        places = _places(shown)
        more = f" and {self.count - len(shown)} more" if self.count > len(shown) else ""
        example = self.failures[0].message
        return f"{self.count} {what} [{self.rule}], e.g. {places}{more}: {example}\n      fix: {fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "value": self.value, "count": self.count, "fix": self.line().split("fix: ")[-1]}


def count_places(failures: list[ValidationFailure]) -> int:
    """How many places `failures` stand for: each one, and the `more` it folds in."""
    return sum(1 + failure.more for failure in failures)


def count_by_rule(failures: list[ValidationFailure]) -> dict[str, int]:
    """Exact places per rule, listed or folded into `more`."""
    counts: dict[str, int] = defaultdict(int)
    for failure in failures:
        counts[failure.rule] += 1 + failure.more
    return dict(counts)


def group_failures(failures: list[ValidationFailure]) -> list[FailureGroup]:
    """One group per (rule, value), the largest first (ties in the order they were found)."""
    groups: dict[tuple[str, str | None], list[ValidationFailure]] = defaultdict(list)
    for failure in failures:
        groups[(failure.rule, failure.value)].append(failure)
    ordered = sorted(groups.items(), key=lambda item: -count_places(item[1]))
    return [FailureGroup(rule, value, members) for (rule, value), members in ordered]


class DataValidationError(RuntimeError):
    """The data broke at least one rule; str() says it once per cause, with the fix; `report_path` has every row."""

    def __init__(self, failures: list[ValidationFailure], report_path: str | Path) -> None:
        self.failures, self.report_path = failures, str(report_path)
        self.groups = group_failures(failures)
        lines = [
            f"data validation failed: {count_places(failures)} problem(s) of {len(self.groups)} kind(s); "
            f"every row is listed in {self.report_path}"
        ]
        lines += [f"  {group.line()}" for group in self.groups]
        super().__init__("\n".join(lines))


def snippet(text: Any, width: int = 60) -> str:
    text = "" if pd.isna(text) else str(text)
    return f'"{text[: width - 1]}…"' if len(text) > width else f'"{text}"'


def place(row: pd.Series | dict[str, Any]) -> str:
    return f"{row['source']} row {row['row']}"


def _places(failures: list[ValidationFailure]) -> str:
    """`a.csv row 3, row 9, b.csv row 2`: the file named once per run of the same file."""
    parts, last = [], None
    for failure in failures:
        where = f"row {failure.row}" if failure.row is not None else (failure.split or "the file")
        parts.append(where if failure.file == last else f"{failure.file} {where}")
        last = failure.file
    return ", ".join(parts)
