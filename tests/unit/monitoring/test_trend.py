"""The trend on small scored datasets built in code: out-of-core aggregation equals pandas, the surge test finds a
planted rise and names its group and window, bad input gets one clear error each, and alerts are sent once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_lib.config import ConfigError, load_config
from pipeline_lib.monitoring import scored as scored_module
from pipeline_lib.monitoring.alerts import NotifyError, send_new, senders, state_path
from pipeline_lib.monitoring.scored import TrendError, aggregate, check_columns, open_scored
from pipeline_lib.monitoring.trend import NO_VERDICT, SURGE, analyse, run_trend
from tests.integration.servers import json_receiver

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
LABELS = ("negative", "neutral", "positive")


def frame(seed: int = 0, days: int = 10, per_day: int = 80, surge: tuple[str, int, int] | None = None) -> pd.DataFrame:
    """Scored rows for tickers A, B, C: labels at 15/55/30 %, probabilities leaning to the label."""
    rng = np.random.default_rng(seed)
    rows = []
    for ticker in "ABC":
        for day in range(days):
            count = per_day + (surge[2] if surge and surge[:2] == (ticker, day) else 0)
            labels = rng.choice(LABELS, count, p=[0.15, 0.55, 0.30])
            if surge and surge[:2] == (ticker, day):
                labels[: surge[2]] = "negative"
            for i, label in enumerate(labels):
                p = rng.dirichlet([1, 1, 1]) * 0.4
                p[LABELS.index(label)] += 0.6
                stamp = START + timedelta(days=day, seconds=int(rng.integers(0, 86400)))
                rows.append(
                    {
                        "id": f"{ticker}{day}-{i}",
                        "published_at": stamp,
                        "ticker": ticker,
                        "text": f"{label} news {i} about {ticker}",
                        "label": str(label),
                        **{f"p_{name}": float(v) for name, v in zip(LABELS, p, strict=True)},
                        "model": "m",
                        "version": "1",
                    }
                )
    return pd.DataFrame(rows)


def write(data: pd.DataFrame, folder: Path, parts: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(data)), parts)):
        pq.write_table(pa.Table.from_pandas(data.iloc[chunk], preserve_index=False), folder / f"part-{i:05d}.parquet")
    (folder / "manifest.json").write_text(json.dumps({"model": "m", "version": "1"}))
    pq.write_table(pa.table({"reason": ["empty"]}), folder / "bad_rows-00000.parquet")  # never read as rows
    return folder


def config(tmp_path: Path, *extra: str):
    return load_config(
        None,
        [
            "trend.time_column=published_at",
            "trend.by=[ticker]",
            f"trend.output={tmp_path / 'out'}",
            f"paths.write_roots=[., {tmp_path}]",
            *extra,
        ],
    )


def test_batched_aggregation_equals_pandas(tmp_path, monkeypatch):
    data = frame()
    folder = write(data, tmp_path / "scored")
    monkeypatch.setattr(scored_module, "BATCH_ROWS", 97)  # many small batches per file
    cfg = config(tmp_path)
    scored = open_scored(folder)
    got = aggregate(scored, cfg.trend, check_columns(scored, cfg.trend)).sort_values(["ticker", "window"])
    data["window"] = data["published_at"].dt.floor("1D")
    data["hits"] = (data["label"] == "negative").astype(int)
    data["value"] = data["p_positive"] - data["p_negative"]
    want = data.groupby(["ticker", "window"]).agg(n=("id", "size"), hits=("hits", "sum"), index_sum=("value", "sum"))
    want = want.reset_index().sort_values(["ticker", "window"])
    assert got["n"].tolist() == want["n"].tolist() and got["hits"].tolist() == want["hits"].tolist()
    assert np.allclose(got["index_sum"], want["index_sum"])


def test_a_planted_surge_is_named_by_group_and_window(tmp_path):
    folder = write(frame(seed=3, surge=("B", 9, 40)), tmp_path / "scored")
    report = run_trend(config(tmp_path), folder)
    assert report["verdict"] == SURGE and [a["key"] for a in report["alerts"]] == ["ticker=B"]
    alert = report["alerts"][0]
    assert alert["start"] == (START + timedelta(days=9)).isoformat() and alert["n"] == 120
    assert alert["q_value"] <= 0.05 and alert["effect"] >= 0.05 and alert["baseline"]["n"] == 7 * 80
    assert len(alert["examples"]) == 5 and all(e["label"] == "negative" for e in alert["examples"])
    probabilities = [e["p_negative"] for e in alert["examples"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert report["index"]["formula"] == "mean(p_positive - p_negative)"
    written = json.loads(Path(report["outputs"]["json"]).read_text())
    assert written["alerts"][0]["key"] == "ticker=B" and len(written["groups"][0]["windows"]["start"]) == 10
    html = Path(report["outputs"]["html"]).read_text()
    assert html.count('<img class="chart"') == 1 and "data:image/png;base64," in html


def test_quiet_data_raises_no_alert_and_text_timestamps_parse(tmp_path):
    data = frame(seed=5)
    data["published_at"] = [t.isoformat() for t in data["published_at"]]  # ISO text with a zone
    report = analyse(config(tmp_path), write(data, tmp_path / "scored"))
    assert report["verdict"] == "no surge" and not report["alerts"]


def test_too_few_rows_and_an_empty_latest_window_give_no_verdict(tmp_path):
    data = frame(seed=1)
    data = data[~((data["ticker"] == "C") & (data["published_at"] >= START + timedelta(days=9)))]  # C silent
    data = data[~((data["ticker"] == "A") & (data["published_at"] >= START + timedelta(days=9)))].iloc[:-1]
    extra = frame(seed=2, per_day=10)
    data = pd.concat([data, extra[(extra["ticker"] == "A") & (extra["published_at"] >= START + timedelta(days=9))]])
    report = analyse(config(tmp_path), write(data, tmp_path / "scored"))
    verdicts = {g["key"]: (g["verdict"], g["latest"]["reason"]) for g in report["groups"]}
    assert verdicts["ticker=A"] == (NO_VERDICT, "no verdict: 10 rows < trend.min_count 30")
    assert verdicts["ticker=C"] == (NO_VERDICT, "no rows in this window")
    assert verdicts["ticker=B"][0] == "no surge"


def test_index_without_a_positive_label(tmp_path):
    data = frame().drop(columns=["p_positive"])
    scored = open_scored(write(data, tmp_path / "scored"))
    index = check_columns(scored, config(tmp_path).trend)
    assert index.formula == "-mean(p_negative)" and "trend.index_positive" in index.reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns=["published_at"]), "no column 'published_at' for --time-column"),
        (
            lambda d: d.assign(published_at=["31/12/2025"] + [str(t) for t in d["published_at"][1:]]),
            "part-00000.parquet row 1: 'published_at' is '31/12/2025': expected an ISO-8601 time",
        ),
        (
            lambda d: d.assign(published_at=[t.isoformat() for t in d["published_at"][:-1]] + [None]),
            "part-00002.parquet row 240: 'published_at' is empty",
        ),
        (lambda d: d.assign(published_at=range(len(d))), "is int64: expected timestamps, dates or ISO-8601 text"),
        (lambda d: d.drop(columns=["p_negative"]), "--label (trend.label): the model has no label 'negative'"),
    ],
)
def test_bad_input_gets_one_clear_error(tmp_path, change, message):
    folder = write(change(frame(days=3)), tmp_path / "scored")
    with pytest.raises(TrendError) as caught:
        run_trend(config(tmp_path), folder)
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_bad_folders_and_settings(tmp_path):
    with pytest.raises(TrendError, match="no such file or folder"):
        analyse(config(tmp_path), tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrendError, match=r"no part-\*\.parquet files"):
        analyse(config(tmp_path), tmp_path / "empty")
    folder = write(frame(days=2), tmp_path / "scored")
    with pytest.raises(TrendError, match="no time column: give --time-column"):
        analyse(config(tmp_path, "trend.time_column=null"), folder)
    with pytest.raises(TrendError, match="no column 'sector' for --by"):
        analyse(config(tmp_path, "trend.by=[sector]"), folder)
    with pytest.raises(ConfigError, match="expected a whole number and a unit"):
        config(tmp_path, "trend.window=daily")
    with pytest.raises(ConfigError, match="BLOCK-TYPE/NAME"):
        config(tmp_path, "trend.notify_block=alerts")


@pytest.fixture
def receiver():
    with json_receiver() as found:
        yield found


def test_an_alert_is_sent_once_and_retried_after_a_failure(tmp_path, receiver):
    url, bodies, answer = receiver
    folder = write(frame(seed=3, surge=("B", 9, 40)), tmp_path / "scored")
    cfg = config(tmp_path, f"trend.notify_url={url}")
    report = run_trend(cfg, folder)
    answer["status"] = 500
    with pytest.raises(NotifyError, match="answered HTTP 500; the alert will be sent on the next run"):
        send_new(report, senders(cfg), state_path(cfg, folder))
    answer["status"] = 200
    first = send_new(report, senders(cfg), state_path(cfg, folder))
    second = send_new(run_trend(cfg, folder), senders(cfg), state_path(cfg, folder))
    assert len(first["sent"]) == 1 and not second["sent"] and len(second["already_sent"]) == 1
    assert len(bodies) == 2  # the refused one, then the delivered one
    body = bodies[-1]
    assert body["group"] == {"ticker": "B"} and body["window"]["start"] == (START + timedelta(days=9)).isoformat()
    assert {"share", "baseline", "p_value", "q_value", "examples"} <= set(body)
    assert (folder / "trend_alerts.json").is_file()


def test_vectorized_fisher_equals_scipy():
    from scipy import stats

    from pipeline_lib.monitoring.stats import fisher_greater

    rng = np.random.default_rng(0)
    n, n_b = rng.integers(1, 200, 300), rng.integers(1, 2000, 300)
    k, k_b = rng.integers(0, n + 1), rng.integers(0, n_b + 1)
    want = [
        stats.fisher_exact([[a, b - a], [c, d - c]], alternative="greater")[1]
        for a, b, c, d in zip(k, n, k_b, n_b, strict=True)
    ]
    assert np.allclose(fisher_greater(k, n, k_b, n_b), want, rtol=1e-9, atol=1e-12)


def test_without_groups_the_whole_stream_is_one_group(tmp_path):
    folder = write(frame(seed=3, surge=("B", 9, 120)), tmp_path / "scored")
    report = analyse(config(tmp_path, "trend.by=[]"), folder)
    assert [g["key"] for g in report["groups"]] == ["(all)"] and report["alerts"][0]["group"] == {}
    assert report["alerts"][0]["n"] == 3 * 80 + 120 and len(report["groups"][0]["windows"]["n"]) == 10
