"""Reading a scored dataset out of core: its part files, its columns checked against the trend's settings, and one
pass of batches aggregated per group and window (never the whole dataset in memory).

A scored dataset is a folder of `part-*.parquet` files (and a `manifest.json`; `bad_rows*.parquet` files are not
scored rows and are ignored), or one Parquet file. Each row carries the first model's `label` and one `p_<label>`
per label; the time column may be a timestamp (naive ones are taken as UTC), a date, or ISO-8601 text.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.config import TrendConfig, window_length

BATCH_ROWS = 65_536
NONE_GROUP = "(none)"  # a group column's missing value
UTC = pa.timestamp("us", tz="UTC")
POSITIVE_NAMES = ("positive", "pos", "bullish")


class TrendError(RuntimeError):
    """The trend cannot be computed from this input; the message names the file, row or field and the fix."""


@dataclass(frozen=True)
class IndexDefinition:
    """The sentiment index: mean(p_positive - p_negative), or -mean(p_negative) without a positive label."""

    positive: str | None
    negative: str
    reason: str

    @property
    def formula(self) -> str:
        if self.positive is None:
            return f"-mean(p_{self.negative})"
        return f"mean(p_{self.positive} - p_{self.negative})"


@dataclass(frozen=True)
class Scored:
    """The part files of a scored dataset, its schema and the labels its `p_<label>` columns name."""

    root: Path
    files: list[Path]
    schema: pa.Schema

    @property
    def labels(self) -> list[str]:
        return [name[2:] for name in self.schema.names if name.startswith("p_")]


def open_scored(path: str | Path) -> Scored:
    """The scored dataset at `path` (a folder of part files or one Parquet file), checked to be readable."""
    import pyarrow.parquet as pq

    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(
            p
            for p in root.rglob("part-*.parquet")
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts[:-1])
        )  # not the half-written parts in a writer's hidden or _temporary folder
        if not files:
            raise TrendError(
                f"{root}: no part-*.parquet files: expected the output folder of `tunepipe score` (or one Parquet file)"
            )
    else:
        raise TrendError(f"{root}: no such file or folder (expected the output folder of `tunepipe score`)")
    try:
        schema = pq.read_schema(files[0])
    except (pa.ArrowException, OSError) as exc:
        raise TrendError(f"{files[0]}: not a readable Parquet file ({exc})") from None
    return Scored(root, files, schema)


def check_columns(scored: Scored, settings: TrendConfig) -> IndexDefinition:
    """The settings' columns exist and the watched label is one the model has; how the index is defined."""
    names = scored.schema.names
    where = f"{scored.files[0]}"
    if not settings.time_column:
        raise TrendError(f"no time column: give --time-column (trend.time_column), one of: {', '.join(names)}")
    for option, column in [("--time-column (trend.time_column)", settings.time_column)] + [
        ("--by (trend.by)", column) for column in settings.by
    ]:
        if column not in names:
            raise TrendError(f"{where}: no column {column!r} for {option}; the columns are: {', '.join(names)}")
    labels = scored.labels
    if "label" not in names or not labels:
        raise TrendError(f"{where}: no `label` and `p_<label>` columns: is this the output of `tunepipe score`?")
    for option, label in (
        ("--label (trend.label)", settings.label),
        ("trend.index_positive", settings.index_positive),
        ("trend.index_negative", settings.index_negative),
    ):
        if label is not None and label not in labels:
            raise TrendError(
                f"{option}: the model has no label {label!r}; its labels (p_<label> columns) are: {', '.join(labels)}"
            )
    negative = settings.index_negative or settings.label
    if settings.index_positive:
        return IndexDefinition(settings.index_positive, negative, "trend.index_positive and the negative label")
    found = [label for label in labels if label.lower() in POSITIVE_NAMES and label != negative]
    if found:
        return IndexDefinition(found[0], negative, f"the model's labels include {found[0]!r} and {negative!r}")
    return IndexDefinition(
        None, negative, f"the model has no label named {'/'.join(POSITIVE_NAMES)} (set trend.index_positive)"
    )


def to_utc(values: pa.Array | pa.ChunkedArray, file: Path, first_row: int, column: str) -> pa.Array:
    """The time column as UTC timestamps; an empty or unparsable value is an error naming file, row and value."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kind = values.type
    if pa.types.is_timestamp(kind):
        stamps = values.cast(UTC) if kind.tz else pc.assume_timezone(values.cast(pa.timestamp("us")), "UTC")
    elif pa.types.is_date(kind):
        stamps = pc.assume_timezone(values.cast(pa.timestamp("us")), "UTC")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        stamps = _parse_text(values, file, first_row, column)
    else:
        raise TrendError(
            f"{file}: column {column!r} is {kind}: expected timestamps, dates or ISO-8601 text "
            "(give another --time-column)"
        )
    if stamps.null_count:
        row = first_row + int(pc.index(pc.is_null(stamps), True).as_py())
        raise TrendError(f"{file} row {row}: {column!r} is empty: every scored row needs a time")
    return stamps


def _parse_text(values: pa.Array, file: Path, first_row: int, column: str) -> pa.Array:
    for target in (UTC, pa.timestamp("us")):  # zoned text first, then naive text taken as UTC
        try:
            stamps = values.cast(target)
        except pa.ArrowInvalid:
            continue
        return stamps if target.tz else pc.assume_timezone(stamps, "UTC")
    parsed = pd.to_datetime(pd.Series(values.to_pylist(), dtype=object), utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna() & pd.Series(values.is_valid().to_pylist())
    if bad.any():
        index = int(np.flatnonzero(bad.to_numpy())[0])
        raise TrendError(
            f"{file} row {first_row + index}: {column!r} is {values[index].as_py()!r}: expected an ISO-8601 time "
            "such as 2026-01-31T09:30:00Z or 2026-01-31 (or give another --time-column)"
        )
    return pa.array(parsed, type=UTC)


def window_floor(stamps: pa.Array, window: str) -> pa.Array:
    multiple, unit = window_length(window)
    return pc.floor_temporal(stamps, multiple=multiple, unit=unit, week_starts_monday=True)


def batches(scored: Scored, columns: list[str]) -> Iterator[tuple[Path, int, pa.RecordBatch]]:
    """(file, number of its first row, batch) over every part file, `BATCH_ROWS` rows at a time."""
    import pyarrow.parquet as pq

    for file in scored.files:
        try:
            reader = pq.ParquetFile(file)
            missing = [c for c in columns if c not in reader.schema_arrow.names]
            if missing:
                raise TrendError(f"{file}: no column {missing[0]!r} (the dataset's first file has it)")
            row = 1
            for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield file, row, batch
                row += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise TrendError(f"{file}: cannot read it ({exc})") from None


def group_values(batch: pa.RecordBatch, by: list[str]) -> list[pa.Array]:
    return [pc.fill_null(batch.column(column).cast(pa.string()), NONE_GROUP) for column in by]


def aggregate(scored: Scored, settings: TrendConfig, index: IndexDefinition) -> pd.DataFrame:
    """Per group and window: rows `n`, watched-label rows `hits`, and the index's sum and sum of squares."""
    time, by = settings.time_column or "", list(settings.by)
    probs = sorted({f"p_{index.negative}", *([f"p_{index.positive}"] if index.positive else [])})
    columns = list(dict.fromkeys([time, *by, "label", *probs]))
    keys = [*(f"g{i}" for i in range(len(by))), "window"]
    partial: list[pa.Table] = []
    for file, first_row, batch in batches(scored, columns):
        stamps = to_utc(batch.column(time), file, first_row, time)
        value = pc.negate(batch.column(f"p_{index.negative}").cast(pa.float64()))
        if index.positive:
            value = pc.add(value, batch.column(f"p_{index.positive}").cast(pa.float64()))
        value = pc.fill_null(value, 0.0)
        hits = pc.fill_null(pc.equal(batch.column("label").cast(pa.string()), settings.label), False)
        table = pa.table(
            {
                **{f"g{i}": array for i, array in enumerate(group_values(batch, by))},
                "window": window_floor(stamps, settings.window),
                "n": pa.array(np.ones(batch.num_rows, dtype=np.int64)),
                "hits": hits.cast(pa.int64()),
                "index_sum": value,
                "index_sq": pc.multiply(value, value),
            }
        )
        partial.append(_sum(table, keys))
        if len(partial) >= 32:  # keep the running aggregate small
            partial = [_sum(pa.concat_tables(partial), keys)]
    if not partial:
        raise TrendError(f"{scored.root}: the scored dataset has no rows")
    frame = _sum(pa.concat_tables(partial), keys).to_pandas()
    return frame.rename(columns={f"g{i}": column for i, column in enumerate(by)})


def _sum(table: pa.Table, keys: list[str]) -> pa.Table:
    summed = table.group_by(keys).aggregate([(c, "sum") for c in ("n", "hits", "index_sum", "index_sq")])
    return summed.rename_columns(
        [name.removesuffix("_sum") if name not in keys else name for name in summed.column_names]
    )


def most_negative(
    scored: Scored,
    settings: TrendConfig,
    wanted: dict[tuple[tuple[str, ...], Any], str],
    count: int,
) -> dict[str, list[dict[str, Any]]]:
    """The `count` texts with the highest p_<watched label> of each (group values, window start) in `wanted`
    (mapped to an alert key), in one more pass over the data; empty lists when there is no text column."""
    found: dict[str, list[tuple[float, int, dict[str, Any]]]] = {key: [] for key in wanted.values()}
    text = settings.text_column
    if not wanted or count == 0 or text not in scored.schema.names:
        return {key: [] for key in found}
    time, by, prob = settings.time_column or "", list(settings.by), f"p_{settings.label}"
    ids = [c for c in ("id", "row_id") if c in scored.schema.names][:1]
    columns = list(dict.fromkeys([time, *by, prob, text, "label", *ids]))
    starts = {pd.Timestamp(start) for _, start in wanted}
    serial = 0
    for file, first_row, batch in batches(scored, columns):
        windows = window_floor(to_utc(batch.column(time), file, first_row, time), settings.window)
        mask = pc.is_in(windows, value_set=pa.array(sorted(starts), type=UTC))
        if not pc.any(mask).as_py():
            continue
        rows = pa.Table.from_batches([batch]).append_column("__window", windows)
        rows = rows.append_column("__row", pa.array(np.arange(first_row, first_row + batch.num_rows)))
        rows = rows.filter(mask)
        groups = [g.to_pylist() for g in group_values(rows, by)] if by else []
        for i, record in enumerate(rows.to_pylist()):
            key = wanted.get((tuple(g[i] for g in groups), pd.Timestamp(record["__window"])))
            if key is None:
                continue
            item = {
                "id": record[ids[0]] if ids else f"{file.name}:{record['__row']}",
                "text": record[text],
                "label": record["label"],
                prob: record[prob],
            }
            serial += 1
            entry = (float(record[prob] or 0.0), -serial, item)
            heap = found[key]
            if len(heap) < count:
                heapq.heappush(heap, entry)
            else:
                heapq.heappushpop(heap, entry)
    return {
        key: [item for *_, item in sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)]
        for key, heap in found.items()
    }
