"""`tunepipe data add`: validate new labelled rows, append them to a DVC-tracked dataset, make a new version.

All or nothing: the rows are checked with the pipeline's own rules (reader + validate step, GX included) on
the would-be dataset before anything is written; a rejected file changes nothing, and a failing `dvc add`,
`dvc push` or `git commit` puts the old file and pointer back.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.readers import DataFormatError, read_labelled_text
from pipeline_lib.data.versions import DVC, dvc_pointer_md5, file_md5
from pipeline_lib.layout import RunDir
from pipeline_lib.roots import check_write

DATA_DIR = Path("data")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DatasetError(RuntimeError):
    """The dataset cannot take a new version (not a git/DVC repo, out of sync, a command failed)."""


@dataclass
class AddResult:
    dataset: str
    path: str
    rows_added: int
    rows_before: int
    rows_after: int
    old_md5: str | None
    new_md5: str
    commit: str
    pushed_to: str
    label_issues: list[dict[str, Any]] = field(default_factory=list)  # suspect rows of the added file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.path}: +{self.rows_added} rows ({self.rows_before} → {self.rows_after})\n"
            f"  old md5 {self.old_md5 or '(new dataset)'}\n"
            f"  new md5 {self.new_md5}\n"
            f"  committed {self.commit[:12]} ({self.path}.dvc), pushed to DVC remote {self.pushed_to}"
        ) + suspect_rows(self.label_issues)


class LabelIssuesRejected(DatasetError):
    """`--reject-label-issues`: the added file has rows whose label looks wrong; nothing was written."""


def suspect_rows(issues: list[dict[str, Any]], limit: int = 20) -> str:
    """The added file's likely mislabelled rows, most suspect first (empty string when none)."""
    if not issues:
        return ""
    lines = [f"\n  {len(issues)} row(s) of the added file look mislabelled (data.label_issues; most suspect first):"]
    for issue in issues[:limit]:
        text = issue["text"] if len(issue["text"]) <= 70 else issue["text"][:69] + "…"
        lines.append(
            f"    {issue['file']} row {issue['row']}: labelled {issue['label']!r}, looks {issue['suggested']!r} "
            f"(p={issue['suggested_probability']:.2f}): {text!r}"
        )
    if len(issues) > limit:
        lines.append(f"    and {len(issues) - limit} more")
    return "\n".join(lines)


def dataset_path(name: str) -> Path:
    """Dataset NAME lives in `data/NAME.csv` (tracked by `data/NAME.csv.dvc`)."""
    if not NAME_PATTERN.match(name):
        raise DatasetError(
            f"dataset name {name!r}: expected letters, digits, '_', '-' or '.' (e.g. financial_sentiment)"
        )
    return DATA_DIR / f"{name}.csv"


def add_rows(cfg: PipelineConfig, new_file: Path, dataset: str, reject_label_issues: bool = False) -> AddResult:
    """Validate `new_file`'s rows appended to dataset `dataset`, then write, `dvc add`, `dvc push`, `git commit`.
    Rows of `new_file` the label check flags are listed; with `reject_label_issues` they refuse the file."""
    target, new_file = dataset_path(dataset), Path(new_file)
    check_write(target, cfg, f"--dataset {dataset}")  # data/ may be a symlink: the file written must be in the roots
    _check_repository(target)
    new_rows = read_labelled_text(new_file, cfg.data)  # format errors name new_file and its row
    header, old_text = _current(target, cfg)
    cfg = _known_labels(cfg, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset}.", dir=target.parent))
    try:
        combined = staging / target.name
        starts = _write_combined(combined, old_text, header, new_rows, cfg)
        places = _Places(combined, target, new_file, new_rows, starts)
        issues = added_label_issues(_validate(cfg, combined, places), places)
        if issues and reject_label_issues:
            raise LabelIssuesRejected(
                f"{new_file}: refused by --reject-label-issues, nothing was written"
                + suspect_rows(issues)
                + "\n  correct those labels (or drop --reject-label-issues to add them with a warning)"
            )
        rows_before = len(read_labelled_text(target, cfg.data)) if target.exists() else 0
        old_md5 = dvc_pointer_md5(target)
        new_md5, commit, remote = _publish(target, combined, staging, dataset, len(new_rows), old_md5)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AddResult(
        dataset=dataset,
        path=str(target),
        rows_added=len(new_rows),
        rows_before=rows_before,
        rows_after=rows_before + len(new_rows),
        old_md5=old_md5,
        new_md5=new_md5,
        commit=commit,
        pushed_to=remote,
        label_issues=issues,
    )


def added_label_issues(run: RunDir, places: _Places) -> list[dict[str, Any]]:
    """The label check's flagged rows that come from the added file, placed in it (file, row)."""
    if not run.label_issues.is_file():
        return []
    issues = pd.read_parquet(run.label_issues)
    found = []
    for issue in issues.to_dict("records"):
        file, row = places.place(int(issue["row"]))
        if file == str(places.new_file):
            found.append({**issue, "file": file, "row": row})
    return found


def _run(args: list[str], what: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise DatasetError(f"{what} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def _check_repository(target: Path) -> None:
    try:
        _run(["git", "rev-parse", "--show-toplevel"], "git rev-parse")
    except (DatasetError, OSError) as exc:
        raise DatasetError(f"{Path.cwd()} is not a git repository: run `tunepipe data add` from the project") from exc
    if not Path(".dvc").is_dir():
        raise DatasetError(f"{Path.cwd()} has no .dvc folder: run it from the DVC project root (`dvc init` once)")
    pointer = dvc_pointer_md5(target)
    if target.exists() and pointer is not None and file_md5(target) != pointer:
        raise DatasetError(
            f"{target} has changes not recorded in {target}.dvc (md5 {file_md5(target)} vs {pointer}): "
            "`dvc add` them or `dvc checkout` the file first"
        )
    if not target.exists() and pointer is not None:
        raise DatasetError(f"{target} is missing but versioned in {target}.dvc: run `tunepipe data pull` first")


def _current(target: Path, cfg: PipelineConfig) -> tuple[list[str], str]:
    """The dataset's CSV header and text (a new dataset gets text,label,split)."""
    if not target.exists():
        return [cfg.data.text_column, cfg.data.label_column, cfg.data.split_column], ""
    text = target.read_text(encoding="utf-8-sig")
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    if cfg.data.text_column not in header or cfg.data.label_column not in header:
        raise DataFormatError(target, f"header {header} lacks the text/label columns", expected="a labelled CSV")
    return [h.strip() for h in header], text


def _write_combined(path: Path, old_text: str, header: list[str], rows: pd.DataFrame, cfg: PipelineConfig) -> list[int]:
    """Old bytes untouched, then the new rows in the dataset's column order; returns each new row's first line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not old_text:
        writer.writerow(header)
    elif not old_text.endswith("\n"):
        old_text += "\n"
    line = old_text.count("\n") + buffer.getvalue().count("\n") + 1
    columns = {cfg.data.text_column: "text", cfg.data.label_column: "label", cfg.data.split_column: "split"}
    starts = []
    for record in rows.to_dict("records"):
        before = buffer.tell()
        writer.writerow(["" if pd.isna(v := record.get(columns.get(h, ""))) or v is None else v for h in header])
        starts.append(line)
        line += buffer.getvalue()[before:].count("\n")
    path.write_text(old_text + buffer.getvalue(), encoding="utf-8")
    return starts


@dataclass
class _Places:
    """Maps a row of the staged (combined) file back to the dataset or the new file."""

    combined: Path
    target: Path
    new_file: Path
    new_rows: pd.DataFrame
    starts: list[int]

    def place(self, row: int | None) -> tuple[str, int | None]:
        if row is None or not self.starts or row < self.starts[0]:
            return str(self.target), row
        index = max(i for i, start in enumerate(self.starts) if start <= row)
        return str(self.new_file), int(self.new_rows.iloc[index]["row"])

    def rewrite(self, message: str) -> str:
        def repl(match: re.Match[str]) -> str:
            file, row = self.place(int(match.group(1)))
            return f"{file} row {row}"

        message = re.sub(re.escape(str(self.combined)) + r" row (\d+)", repl, message)
        return message.replace(str(self.combined), str(self.target))


def _known_labels(cfg: PipelineConfig, target: Path) -> PipelineConfig:
    """New rows may only carry the labels the dataset has (or `data.labels`, when set): a label the dataset never
    had is a typo or a new class, and a new class is a decision to make in the config, not by a data file."""
    if cfg.data.labels or not target.exists():
        return cfg
    labels = sorted(str(label) for label in read_labelled_text(target, cfg.data)["label"].dropna().unique())
    if len(labels) < 2:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"labels": labels})})


def _validate(cfg: PipelineConfig, combined: Path, places: _Places) -> RunDir:
    """The validate step on the would-be dataset; failures name the new file's rows (or the dataset's)."""
    from pipeline_lib.data.failures import DataValidationError, ValidationFailure
    from pipeline_lib.steps.validate import validate

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run = RunDir(Path(cfg.paths.store) / "data-add" / stamp)
    every_row = cfg.data.label_check.model_copy(update={"budget": None})  # the added rows are checked now, all
    data = cfg.data.model_copy(update={"path": str(combined), "files": {}, "label_check": every_row})
    try:
        validate(cfg.model_copy(update={"data": data}), run)
    except DataValidationError as exc:
        mapped = []
        for failure in exc.failures:
            file, row = (
                places.place(failure.row) if failure.file == str(places.combined) else (failure.file, failure.row)
            )
            mapped.append(
                ValidationFailure(
                    file, row, failure.split, failure.rule, places.rewrite(failure.message), failure.value
                )
            )
        raise DataValidationError(mapped, exc.report_path) from None
    return run


def _publish(
    target: Path, combined: Path, staging: Path, dataset: str, added: int, old_md5: str | None
) -> tuple[str, str, str]:
    """Swap the file in, `dvc add`, `dvc push`, commit the pointer; on any failure restore file and pointer."""
    pointer = target.with_name(target.name + ".dvc")
    gitignore = target.parent / ".gitignore"
    saved = {p: p.read_bytes() for p in (target, pointer, gitignore) if p.exists()}
    try:
        shutil.copyfile(combined, staging / "swap")
        os.replace(staging / "swap", target)
        _run([*DVC, "add", "-q", str(target)], "dvc add")
        new_md5 = dvc_pointer_md5(target) or file_md5(target)
        remote = _run([*DVC, "remote", "default"], "dvc remote default") or "(default)"
        _run([*DVC, "push", "-q", str(pointer)], "dvc push")
        paths = [str(pointer)] + ([str(gitignore)] if gitignore.exists() else [])
        _run(["git", "add", "--", *paths], "git add")
        message = f"data: +{added} rows to {dataset} (md5 {old_md5 or 'none'} -> {new_md5})"
        _run(["git", "commit", "-q", "-m", message, "--", *paths], "git commit")
        commit = _run(["git", "rev-parse", "HEAD"], "git rev-parse")
    except BaseException:
        for path in (target, pointer, gitignore):
            if path in saved:
                path.write_bytes(saved[path])
            else:
                path.unlink(missing_ok=True)
        raise
    return new_md5, commit, remote
