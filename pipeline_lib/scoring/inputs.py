"""The files a `tunepipe score` run reads: INPUT arguments (files, folders, globs) expanded, and each file looked at
before anything is scored: format, size and SHA-256, encoding (strictly checked), CSV delimiter and text column
(found as `tunepipe init` finds them, `data/sniff.py`, or given)."""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.data.sniff import detect_encoding, sniff_delimiter, text_column

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
SAMPLE_ROWS = 1000  # rows looked at to choose the text column
MARK = "\uffff"  # stands for an undecodable byte in a decoded text (a Unicode noncharacter: never in real text)


@dataclass(frozen=True)
class InputFile:
    """One input file and how to read it."""

    path: Path
    format: str  # csv | jsonl | parquet
    size: int
    sha256: str
    text_column: str
    columns: tuple[str, ...]
    encoding: str | None = None  # csv / jsonl
    delimiter: str | None = None  # csv
    undecodable: bool = False  # holds bytes that are not valid in `encoding` (their rows are bad rows)

    @property
    def short(self) -> str:
        """The digest's first 12 hex digits: names the file's parts and row ids."""
        return self.sha256[:12]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "columns": list(self.columns)}


def expand(items: list[str]) -> list[Path]:
    """Files named by INPUT arguments, in order, each once: a file, the data files of a folder (recursively, by
    suffix, sorted), or the files a glob matches (`**` recursive)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            matched = [path]
        elif path.is_dir():
            matched = folder_files(path)
            if not matched:
                raise DataFormatError(path, "no data files in the folder", expected=f"files ending {_suffixes()}")
        else:
            hits = sorted(glob.glob(item, recursive=True))
            if not hits:
                raise FileNotFoundError(f"{item}: no such file or folder, and no file matches it as a glob")
            matched = [p for hit in hits for p in ([Path(hit)] if Path(hit).is_file() else folder_files(Path(hit)))]
        found += matched
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _suffixes() -> str:
    return ", ".join(FORMATS)


def folder_files(folder: Path) -> list[Path]:
    """The data files of a folder and its subfolders (by suffix, hidden files left out), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in FORMATS and not any(part.startswith(".") for part in p.parts[-1:])
    )


def format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataFormatError(path, f"unknown suffix {path.suffix!r}", expected=f"one of {_suffixes()}") from None


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def python_encoding(encoding: str | None) -> str:
    """The codec a text file is read with: UTF-8 (a BOM dropped) unless told."""
    return "utf-8-sig" if encoding in (None, "utf-8", "utf8", "UTF-8") else encoding


def first_undecodable(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """(byte offset, byte, line) of the first byte sequence `encoding` cannot decode, streamed; None if all decode."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, lines = 0, 1
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                # the decoder's own buffer may hold a few bytes of the previous block: count from this block's start
                at = max(exc.start - (len(exc.object) - len(block)), 0)
                return offset + at, block[at], lines + block[:at].count(b"\n")
            offset += len(block)
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return offset, 0, lines
    return None


def inspect(path: Path, text: str | None, encoding: str | None, delimiter: str | None) -> InputFile:
    """Look at one input: its format, size, digest, encoding, delimiter and text column; a clear error (naming the
    file and the option that fixes it) for an empty file, bytes that are not UTF-8 without `--encoding`, or a
    missing text column."""
    fmt = format_of(path)
    size = path.stat().st_size
    if size == 0:
        raise DataFormatError(path, "file is empty", expected="a header line (CSV) and at least one data row")
    sha = digest(path)
    undecodable = False
    if fmt != "parquet":
        codec = python_encoding(encoding)
        bad = first_undecodable(path, codec)
        if bad is not None and encoding is None:
            offset, byte, line = bad
            guess = detect_encoding(path)
            hint = f"it looks like {guess}: pass --encoding {guess}" if guess not in ("utf-8", "ascii") else ""
            raise DataFormatError(
                path,
                f"byte 0x{byte:02X} at byte offset {offset} (line {line}) is not valid UTF-8",
                expected=f"UTF-8 text ({hint + '; ' if hint else ''}or --encoding utf-8 --on-bad-row skip to skip "
                "the rows holding such bytes)",
            )
        undecodable = bad is not None
    columns, rows, delimiter = _sample(path, fmt, encoding, delimiter)
    if not rows:
        raise DataFormatError(path, "file holds no data rows", expected="at least one row to score")
    if text is not None:
        if text not in columns:
            raise DataFormatError(
                path,
                f"missing column (columns found: {', '.join(map(repr, columns)) or 'none'})",
                field=text,
                expected=f"a {text!r} column (--text-column names the column holding the text)",
            )
        chosen = text
    else:
        chosen = text_column(list(columns), rows)
        if chosen is None:
            raise DataFormatError(
                path,
                f"no column holds text (columns found: {', '.join(map(repr, columns))})",
                expected="a column of strings (name it with --text-column)",
            )
    return InputFile(path, fmt, size, sha, chosen, tuple(columns), encoding, delimiter, undecodable)


def _sample(
    path: Path, fmt: str, encoding: str | None, delimiter: str | None
) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """Column names, the first rows and the delimiter (CSV) of a file."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            batch = next(parquet.iter_batches(batch_size=SAMPLE_ROWS), None)
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(path, f"cannot read it ({exc})", expected="a Parquet file") from None
        return list(parquet.schema_arrow.names), batch.to_pylist() if batch is not None else [], None
    head = path.read_bytes()[:2_000_000].decode(python_encoding(encoding), errors="replace")
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(head.split("\n")[:-1] or head.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    path, f"not valid JSON ({exc.msg})", row=number, expected="one object a line"
                ) from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, f"found a JSON {type(obj).__name__}", row=number, expected="an object")
            rows.append(obj)
            if len(rows) >= SAMPLE_ROWS:
                break
        return sorted({key for row in rows for key in row}), rows, None
    delimiter = delimiter or sniff_delimiter(path, head)
    csv.field_size_limit(max(csv.field_size_limit(), len(head)))  # a long text is a bad row, not a crash
    reader = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter)
    header = next(reader, [])
    if not header or not any(name.strip() for name in header):
        raise DataFormatError(path, "file is empty", expected="a header line followed by data rows")
    rows = []
    for fields in reader:
        if fields and any(f.strip() for f in fields):
            rows.append(dict(zip(header, fields, strict=False)))
        if len(rows) >= SAMPLE_ROWS:
            break
    return header, rows, delimiter
