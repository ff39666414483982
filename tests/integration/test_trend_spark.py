"""`--engine spark` on real pyspark (local[2]): the same aggregate per group and window as the pyarrow batches, the
same alert, and one clear error for an unparsable timestamp."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from pipeline_lib.monitoring.scored import TrendError, aggregate, check_columns, open_scored
from pipeline_lib.monitoring.trend import analyse
from tests.unit.monitoring.test_trend import START, config, frame, write

pytestmark = pytest.mark.integration
SPARK = ["trend.engine=spark", "trend.spark_master=local[2]"]


def test_spark_aggregates_and_alerts_like_pyarrow(tmp_path):
    from pipeline_lib.monitoring.spark import aggregate_spark

    data = frame(seed=3, surge=("B", 9, 40))
    data["published_at"] = [t.isoformat() for t in data["published_at"]]  # text in one part, timestamps in none
    folder = write(data, tmp_path / "scored")
    cfg = config(tmp_path, *SPARK)
    scored = open_scored(folder)
    index = check_columns(scored, cfg.trend)
    here = aggregate(scored, cfg.trend, index).sort_values(["ticker", "window"]).reset_index(drop=True)
    there = aggregate_spark(scored, cfg.trend, index, "local[2]").sort_values(["ticker", "window"])
    there = there.reset_index(drop=True)
    assert here["ticker"].tolist() == there["ticker"].tolist()
    assert (here["window"].astype("int64") // 1000).tolist() == (there["window"].astype("int64") // 1000).tolist()
    assert here["n"].tolist() == there["n"].tolist() and here["hits"].tolist() == there["hits"].tolist()
    assert np.allclose(here["index_sum"], there["index_sum"]) and np.allclose(here["index_sq"], there["index_sq"])
    weekly = config(tmp_path, *SPARK, "trend.window=1w").trend
    assert sorted(aggregate(scored, weekly, index)["window"].astype("int64") // 1000) == sorted(
        aggregate_spark(scored, weekly, index, "local[2]")["window"].astype("int64") // 1000
    )
    report = analyse(cfg, folder)
    assert [(a["key"], a["start"]) for a in report["alerts"]] == [("ticker=B", (START + timedelta(days=9)).isoformat())]
    assert report["alerts"] == analyse(config(tmp_path), folder)["alerts"]


def test_spark_names_an_unparsable_timestamp(tmp_path):
    data = frame(days=2)
    data["published_at"] = ["yesterday"] + [t.isoformat() for t in data["published_at"][1:]]
    folder = write(data, tmp_path / "scored")
    with pytest.raises(TrendError, match="'published_at' is 'yesterday': expected an ISO-8601 time"):
        analyse(config(tmp_path, *SPARK), folder)
