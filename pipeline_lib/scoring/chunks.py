"""Input files read as a stream of fixed-size chunks (pyarrow), never whole: CSV/TSV through pyarrow's streaming
CSV reader (every column as text, quoted multi-line fields allowed), JSON Lines a block of lines at a time, Parquet a
batch at a time. Each chunk is `chunk_rows` rows (the last fewer), so a chunk's number always names the same rows:
what makes a killed run resumable. Rows whose text is missing, not a string, empty, over `score.max_chars` or holds
undecodable bytes are bad rows."""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.scoring.inputs import MARK, InputFile, python_encoding

CSV_BLOCK = 32 << 20  # bytes per CSV block: one row (a long text) must fit in it
JSON_LINES = 2_000  # JSONL lines parsed into one Arrow batch


def _mark_undecodable(error: UnicodeDecodeError) -> tuple[str, int]:
    return MARK * (error.end - error.start), error.end


codecs.register_error("tunepipe-mark", _mark_undecodable)


class Utf8Stream(io.RawIOBase):
    """A text file in any encoding as a stream of UTF-8 bytes (what pyarrow reads); undecodable bytes become
    `MARK`, so their rows can be told apart and reported."""

    def __init__(self, path: Any, encoding: str) -> None:
        self._text = open(path, encoding=encoding, errors="tunepipe-mark", newline="")  # noqa: SIM115
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            text = self._text.read(1 << 18)
            if not text:
                break
            self._pending += text.encode("utf-8", errors="surrogatepass")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._text.close()
        super().close()


@dataclass
class Chunk:
    """Rows `first_row` .. `first_row + table.num_rows - 1` (1-based data rows) of one input."""

    index: int
    first_row: int
    table: pa.Table


def batches(spec: InputFile) -> Iterator[pa.Table]:
    """The file's rows as a stream of Arrow tables, in file order."""
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(spec.path).iter_batches(batch_size=65_536):
            yield pa.Table.from_batches([batch])
    elif spec.format == "csv":
        yield from _csv(spec)
    else:
        yield from _jsonl(spec)


def _csv(spec: InputFile) -> Iterator[pa.Table]:
    import pyarrow.csv as pcsv

    stream = Utf8Stream(spec.path, python_encoding(spec.encoding))
    try:
        reader = pcsv.open_csv(
            pa.PythonFile(io.BufferedReader(stream, CSV_BLOCK), mode="r"),
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=spec.delimiter or ",", newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(spec.columns, pa.string()), strings_can_be_null=False
            ),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise DataFormatError(
            spec.path, f"malformed CSV ({exc})", expected="RFC 4180 CSV (quote fields holding the delimiter)"
        ) from None
    finally:
        stream.close()


def _jsonl(spec: InputFile) -> Iterator[pa.Table]:
    rows: list[dict[str, Any]] = []
    with open(spec.path, encoding=python_encoding(spec.encoding), errors="tunepipe-mark", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    spec.path, f"not valid JSON ({exc.msg})", row=number, expected="one JSON object per line"
                ) from None
            if not isinstance(obj, dict):
                found = f"found a JSON {type(obj).__name__}"
                raise DataFormatError(spec.path, found, row=number, expected="a JSON object per line")
            rows.append(obj)
            if len(rows) >= JSON_LINES:
                yield _jsonl_table(spec, rows)
                rows = []
    if rows:
        yield _jsonl_table(spec, rows)


def _jsonl_table(spec: InputFile, rows: list[dict[str, Any]]) -> pa.Table:
    """One batch of JSON objects as a table with the file's columns (values that are not text in the text column
    are kept as their JSON, and reported as bad rows)."""
    text = spec.text_column
    columns: dict[str, list[Any]] = {name: [row.get(name) for row in rows] for name in spec.columns}
    for name in {key for row in rows for key in row} - set(spec.columns):
        columns[name] = [row.get(name) for row in rows]
    columns[text] = [v if v is None or isinstance(v, str) else _NotText(v) for v in columns.get(text, [])]
    arrays = {}
    for name, values in columns.items():
        if name == text:
            arrays[name] = pa.array([v if not isinstance(v, _NotText) else v.encoded for v in values], pa.string())
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: each value as its JSON
            arrays[name] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    return pa.table(arrays)


class _NotText:
    """A text-column value that is not a string, encoded so the bad-row check can name it."""

    PREFIX = "\uffffnot-text:"

    def __init__(self, value: Any) -> None:
        self.encoded = f"{self.PREFIX}{type(value).__name__} {json.dumps(value)[:60]}"


def chunks(spec: InputFile, chunk_rows: int) -> Iterator[Chunk]:
    """The file's rows in chunks of exactly `chunk_rows` rows (the last one fewer)."""
    pending: list[pa.Table] = []
    held, index, first = 0, 0, 1
    for table in batches(spec):
        pending.append(table)
        held += table.num_rows
        while held >= chunk_rows:
            merged = pa.concat_tables(pending, promote_options="permissive")
            yield Chunk(index, first, merged.slice(0, chunk_rows))
            rest = merged.slice(chunk_rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
            index, first = index + 1, first + chunk_rows
    if held:
        yield Chunk(index, first, pa.concat_tables(pending, promote_options="permissive"))


def bad_rows(spec: InputFile, table: pa.Table, max_chars: int) -> list[tuple[int, str]]:
    """(position in `table`, reason) of each row that cannot be scored."""
    column = table.column(spec.text_column) if spec.text_column in table.column_names else None
    if column is None:
        return [(i, f"no {spec.text_column!r} value") for i in range(table.num_rows)]
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        values = column.to_pylist()
        return [(i, f"not text ({type(v).__name__} {v!r:.60})") for i, v in enumerate(values)]
    found = []
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            found.append((i, "not text (missing or null)"))
        elif value.startswith(_NotText.PREFIX):
            found.append((i, f"not text ({value.removeprefix(_NotText.PREFIX)})"))
        elif len(value) > max_chars:
            found.append((i, f"{len(value)} characters, over score.max_chars ({max_chars})"))
        elif MARK in value:
            found.append((i, f"undecodable bytes (not valid {spec.encoding or 'utf-8'})"))
        elif not value.strip():
            found.append((i, "empty text"))
    return found
