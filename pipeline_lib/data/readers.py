"""Read labelled text (CSV, JSON Lines, Parquet, Financial PhraseBank) into one DataFrame.

Every row keeps where it came from (`source`, `row`) so that validation can point at a file and a line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig

COLUMNS = ("text", "label", "split", "source", "row")
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".txt": "phrasebank",
}


class DataFormatError(ValueError):
    """A data file cannot be read as labelled text; the message names file, row, field and expectation."""

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        row: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file, self.row, self.field = str(file), row, field
        self.problem, self.expected = problem, expected
        where = self.file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}" + (f"; expected {expected}" if expected else ""))


@dataclass
class _Record:
    row: int
    text: Any
    label: Any
    split: Any = None


def read_labelled_text(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """Read a file, or each supported file of a directory (by name), into text/label/split/source/row."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path not found: {path} (data.path)")
    files = _data_files(path, cfg.format) if path.is_dir() else [path]
    return pd.concat([_read_file(file, cfg) for file in files], ignore_index=True)


def read_data(data: DataConfig, read_file: Callable[[Path, DataConfig], pd.DataFrame] | None = None) -> pd.DataFrame:
    """`data.path` read whole, or each of `data.files` (relative to `data.path`) read as its split."""
    read_file = read_file or read_labelled_text
    if not data.files:
        return read_file(Path(data.path), data)
    root = Path(data.path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path {root} is not a directory: data.files are read relative to it")
    frames = [read_file(root / name, data).assign(split=split) for split, name in data.files.items()]
    return pd.concat(frames, ignore_index=True)


def _data_files(directory: Path, fmt: str) -> list[Path]:
    files = sorted(
        file
        for file in directory.iterdir()
        if file.is_file()
        and not file.name.startswith(".")
        and SUFFIX_FORMATS.get(file.suffix.lower()) is not None
        and fmt in ("auto", SUFFIX_FORMATS[file.suffix.lower()])
    )
    if not files:
        wanted = ", ".join(s for s, f in SUFFIX_FORMATS.items() if fmt in ("auto", f))
        raise DataFormatError(directory, "no data files in the directory", expected=f"files ending {wanted}")
    return files


def _format_of(file: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    try:
        return SUFFIX_FORMATS[file.suffix.lower()]
    except KeyError:
        wanted = ", ".join(SUFFIX_FORMATS)
        raise DataFormatError(file, f"unknown suffix {file.suffix!r}", expected=f"one of {wanted}") from None


def _read_file(file: Path, cfg: DataConfig) -> pd.DataFrame:
    fmt = _format_of(file, cfg.format)
    records = list(_READERS[fmt](file, cfg))
    if not records:
        raise DataFormatError(file, "file holds no data rows", expected="at least one labelled text")
    for record in records:
        _check_record(file, record, cfg)
    return pd.DataFrame(
        {
            "text": [_clean(r.text, keep_empty=True) for r in records],
            "label": [_clean(r.label, keep_empty=False) for r in records],
            "split": pd.Series([_clean(r.split, keep_empty=False) for r in records], dtype=object),
            "source": str(file),
            "row": pd.Series([r.row for r in records], dtype="int64"),
        }
    )


def _clean(value: Any, *, keep_empty: bool) -> str | None:
    """Strip surrounding whitespace; an empty label or split is None (missing), an empty text stays ''."""
    if value is None:
        return None
    value = str(value).strip()
    return value if value or keep_empty else None


def _check_record(file: Path, record: _Record, cfg: DataConfig) -> None:
    fields = ((cfg.text_column, record.text, (str,)), (cfg.label_column, record.label, (str, int)))
    for name, value, types in (*fields, (cfg.split_column, record.split, (str,))):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            found = f"found {type(value).__name__} {value!r}"
            raise DataFormatError(file, found, row=record.row, field=name, expected="a string")
        if "\x00" in str(value):
            raise DataFormatError(
                file, "contains a NUL byte", row=record.row, field=name, expected="text without NUL bytes"
            )


def decode_text(file: Path, encoding: str = "utf-8") -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            file,
            f"byte 0x{data[exc.start]:02X} at byte offset {exc.start} is not valid {encoding}",
            row=line,
            expected=f"{encoding.upper()} text (re-save the file as {encoding.upper()}, or set data.encoding)",
        ) from None


def _require_columns(file: Path, found: Iterable[str], cfg: DataConfig) -> None:
    found = list(found)
    for column in (cfg.text_column, cfg.label_column):
        if column not in found:
            raise DataFormatError(
                file,
                f"missing column (columns found: {', '.join(map(repr, found)) or 'none'})",
                field=column,
                expected=f"a {column!r} column (see data.text_column / data.label_column)",
            )


def _read_csv(file: Path, cfg: DataConfig) -> Iterable[_Record]:
    reader = csv.reader(
        io.StringIO(decode_text(file, cfg.encoding or "utf-8"), newline=""), delimiter=csv_delimiter(file, cfg)
    )
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise DataFormatError(file, "file is empty", expected="a header line followed by data rows")
    _require_columns(file, header, cfg)
    start = reader.line_num + 1
    try:
        for fields in reader:
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                yield _csv_record(file, start, header, fields, cfg)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataFormatError(file, f"malformed CSV ({exc})", row=start, expected="RFC 4180 CSV") from None


def csv_delimiter(file: Path, cfg: DataConfig) -> str:
    """`data.delimiter`, else a tab for .tsv files and a comma for the rest."""
    return cfg.delimiter or ("\t" if file.suffix.lower() == ".tsv" else ",")


def _csv_record(file: Path, row: int, header: list[str], fields: list[str], cfg: DataConfig) -> _Record:
    if len(fields) != len(header):
        raise DataFormatError(
            file,
            f"found {len(fields)} fields",
            row=row,
            expected=f"{len(header)} fields as in the header (quote texts that contain commas)",
        )
    values = dict(zip(header, fields, strict=True))
    return _Record(row, values[cfg.text_column], values[cfg.label_column], values.get(cfg.split_column))


def jsonl_objects(file: Path, encoding: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each non-blank line of a JSONL file as `(line number, object)`; a bad line names its number."""
    for number, line in enumerate(decode_text(file, encoding or "utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                file, f"not valid JSON ({exc.msg})", row=number, expected="one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            found = f"found a JSON {type(obj).__name__}"
            raise DataFormatError(file, found, row=number, expected="a JSON object")
        yield number, obj


def _read_jsonl(file: Path, cfg: DataConfig) -> Iterable[_Record]:
    records, keys = [], set()
    for number, obj in jsonl_objects(file, cfg.encoding):
        keys.update(obj)
        text, label, split = (obj.get(c) for c in (cfg.text_column, cfg.label_column, cfg.split_column))
        records.append(_Record(number, text, label, split))
    if records:
        _require_columns(file, sorted(keys), cfg)
    return records


def _read_parquet(file: Path, cfg: DataConfig) -> Iterable[_Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(file, f"cannot read it ({exc})", expected="a Parquet file") from None
    _require_columns(file, table.column_names, cfg)

    def column(name: str) -> list[Any]:
        return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows

    texts, labels, splits = column(cfg.text_column), column(cfg.label_column), column(cfg.split_column)
    return [_Record(i + 1, texts[i], labels[i], splits[i]) for i in range(table.num_rows)]


def _read_phrasebank(file: Path, cfg: DataConfig) -> Iterable[_Record]:
    """Financial PhraseBank: ISO-8859-1 `sentence@label` lines, split on the last '@'.

    Lines end at LF (CRLF included); any other CR is treated as whitespace, so line numbers match `grep -n`.
    """
    for number, raw in enumerate(decode_text(file, cfg.encoding or "iso-8859-1").split("\n"), start=1):
        line = raw.replace("\r", " ")
        if not line.strip():
            continue
        text, sep, label = line.rpartition("@")
        if not sep:
            raise DataFormatError(file, "no '@' in the line", row=number, expected="'sentence@label'")
        yield _Record(number, text, label)


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet, "phrasebank": _read_phrasebank}
