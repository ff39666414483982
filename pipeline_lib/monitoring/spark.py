"""The trend's aggregation on Apache Spark (`--engine spark`): the same counts and sums per group and window as
`scored.aggregate`, computed by Spark over the part files (`local[*]` by default, a cluster master at scale), so
a scored dataset larger than one machine's disk or patience is reduced where it lives. Only the aggregate (one row
per group and window) comes back to the driver; the surge test, report and alerts then run as for pyarrow.

Windows are Spark's `window()` over UTC, which starts at the epoch like pyarrow's `floor_temporal`; weeks start on
Monday in both (Spark's windows are shifted by 4 days from the epoch's Thursday).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.config import TrendConfig, window_length
from pipeline_lib.monitoring.scored import NONE_GROUP, IndexDefinition, Scored, TrendError

UNITS = {"second": "seconds", "minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}


def session(master: str) -> Any:
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("tunepipe-trend")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def spark_window(window: str) -> tuple[str, str | None]:
    """A trend window as Spark `window()` arguments: (duration, start offset)."""
    multiple, unit = window_length(window)
    return f"{multiple} {UNITS[unit]}", ("4 days" if unit == "week" else None)


def aggregate_spark(scored: Scored, settings: TrendConfig, index: IndexDefinition, master: str) -> pd.DataFrame:
    """Per group and window: `n`, `hits`, `index_sum`, `index_sq`, as `scored.aggregate` returns them."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

    spark = session(master)
    time, by = settings.time_column or "", list(settings.by)
    frame = spark.read.option("mergeSchema", "true").parquet(*[str(file) for file in scored.files])
    kind = frame.schema[time].dataType
    raw = F.col(time)
    if isinstance(kind, TimestampType | TimestampNTZType | DateType):
        stamp = raw.cast(TimestampType())
    elif isinstance(kind, StringType):
        stamp = F.try_to_timestamp(raw)
        bad = frame.where(raw.isNotNull() & stamp.isNull()).select(
            raw.alias("value"), F.input_file_name().alias("file")
        )
        found = bad.limit(1).collect()
        if found:
            raise TrendError(
                f"{found[0]['file']}: {time!r} is {found[0]['value']!r}: expected an ISO-8601 time such as "
                "2026-01-31T09:30:00Z or 2026-01-31 (or give another --time-column)"
            )
    else:
        raise TrendError(f"column {time!r} is {kind.simpleString()}: expected timestamps, dates or ISO-8601 text")
    empty = frame.where(raw.isNull()).select(F.input_file_name().alias("file")).limit(1).collect()
    if empty:
        raise TrendError(f"{empty[0]['file']}: {time!r} is empty in some rows: every scored row needs a time")
    duration, start = spark_window(settings.window)
    window = F.window(stamp, duration, startTime=start) if start else F.window(stamp, duration)
    value = -F.col(f"p_{index.negative}").cast("double")
    if index.positive:
        value = value + F.col(f"p_{index.positive}").cast("double")
    value = F.coalesce(value, F.lit(0.0))
    groups = [F.coalesce(F.col(c).cast("string"), F.lit(NONE_GROUP)).alias(c) for c in by]
    summed = (
        frame.select(
            *groups,
            window.start.alias("window"),
            F.when(F.col("label").cast("string") == settings.label, 1).otherwise(0).alias("hit"),
            value.alias("value"),
        )
        .groupBy(*by, "window")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("hit").alias("hits"),
            F.sum("value").alias("index_sum"),
            F.sum(F.col("value") * F.col("value")).alias("index_sq"),
        )
    )
    result = summed.toPandas()
    if result.empty:
        raise TrendError(f"{scored.root}: the scored dataset has no rows")
    result["window"] = pd.to_datetime(result["window"]).dt.tz_localize("UTC")
    return result.astype({"n": "int64", "hits": "int64", "index_sum": "float64", "index_sq": "float64"})
