"""The sentiment trend on real news: Financial PhraseBank sentences scored once by a real registered model (trained a
few dozen steps on FPB AllAgree, exported to ONNX, registered in a private MLflow store), resampled into seeded
streams of four tickers over ten days. A surge of negative sentences planted in one ticker's last day is named by
group and window; over 200 seeded streams with a surge it is found in >= 95 %, and over 200 without one the share
of streams with any alert stays within alpha plus sampling error. A webhook receiver on 127.0.0.1 gets each alert
once, from `--notify` and from the flow's Prefect notification block, and the HTML report draws its chart in
headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.layout import new_run
from pipeline_lib.monitoring.trend import analyse
from pipeline_lib.registry import store
from pipeline_lib.steps import STEPS, run_step

from .conftest import FAST_RUN
from .servers import json_receiver
from .trend_streams import START, phrasebank, score_pool, stream, write_scored

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
SURGE = ("KONE", 9, 60)  # 60 sentences a human labelled negative, added to KONE's 60 texts of its last day
ALPHA = 0.05
runner = CliRunner()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[pd.DataFrame]:
    """1,500 FPB 50Agree sentences the model never trained on, scored by the champion's ONNX graph."""
    root = tmp_path_factory.mktemp("trend-model")
    source = shared_data / "financial_phrasebank"
    train = phrasebank(source / "Sentences_AllAgree.txt").groupby("true_label", group_keys=False).head(150)
    (root / "data").mkdir()
    train.rename(columns={"true_label": "label"}).to_csv(root / "data" / "fpb.csv", index=False)
    sets = ["data.path=data/fpb.csv", *FAST_RUN, "train.max_steps=40", "train.batch_size=16", "model.max_length=64"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = load_config(None, sets)
        run = new_run(cfg.paths.artifacts)
        for step in STEPS:
            run_step(step, cfg, run)
        client = store.connect(cfg)
        version = store.resolve(client, store.ModelRef.parse(f"{NAME}@champion"))
        onnx = store.onnx_dir_for(cfg, client, version.name, str(version.version))
    texts = phrasebank(source / "Sentences_50Agree.txt")
    texts = texts[~texts["text"].isin(train["text"])].sample(1500, random_state=0)
    yield score_pool(onnx, texts, NAME, str(version.version))


def trend_cli(scored: Path, out: Path, *extra: str):
    args = ["trend", str(scored), "--time-column", "published_at", "--by", "ticker", "--window", "1d"]
    sets = ["--set", f"trend.output={out}", "--set", f"paths.write_roots=[., {out.parent}]"]
    return runner.invoke(app, [*args, *sets, *extra])


def test_a_planted_surge_in_real_news_is_named_by_group_and_window(pool, tmp_path):
    negative = pool[pool["true_label"] == "negative"]
    assert (negative["label"] == "negative").mean() > 2 * (pool["label"] == "negative").mean()  # the model sees it
    scored = write_scored(stream(pool, seed=0, surge=SURGE), tmp_path / "scored")
    result = trend_cli(scored, tmp_path / "out", "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert report["model"]["name"] == NAME and report["verdict"] == "surge"
    assert [(a["group"], a["start"]) for a in report["alerts"]] == [
        ({"ticker": "KONE"}, pd.Timestamp(START + pd.Timedelta(days=9)).isoformat())
    ]
    alert = report["alerts"][0]
    assert alert["n"] == 120 and alert["q_value"] <= ALPHA and alert["examples"]
    assert all(example["text"] in set(pool["text"]) for example in alert["examples"])
    table = trend_cli(scored, tmp_path / "out")
    assert table.exit_code == 2 and "SURGE ticker=KONE 2026-01-10" in table.output and "verdict: surge" in table.output
    screenshot_shows_the_chart(Path(report["outputs"]["html"]), tmp_path / "shot.png")


def screenshot_shows_the_chart(html: Path, shot: Path) -> None:
    """Headless Chromium renders the report; the screenshot has the share line, its band and the alert marker."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1500"]
    subprocess.run([*command, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def near(colour: str, tolerance: int = 40) -> int:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(pixels - rgb).sum(axis=2) < tolerance).sum())

    from pipeline_lib.monitoring.report import ALERT_COLOUR, INDEX_COLOUR, SHARE_COLOUR

    assert near(SHARE_COLOUR) > 300, "the share line is not drawn"
    assert near(INDEX_COLOUR) > 300, "the index line is not drawn"
    assert near(ALERT_COLOUR) > 30, "the alert marker is not drawn"


def test_surges_are_found_and_quiet_streams_stay_quiet(pool, tmp_path):
    """200 seeded streams with the surge, 200 without. Under no surge each stream's four tickers are four
    independent Fisher tests of its last day, Benjamini-Hochberg at alpha = 0.05 (which, with every null true,
    bounds the chance of any alert by alpha); the count of streams with an alert is then at most Binomial(200,
    0.05): we accept up to its 99th percentile (18 streams, 9 %: alpha + 4 points of sampling error)."""
    from scipy import stats

    cfg = load_config(None, ["trend.time_column=published_at", "trend.by=[ticker]", f"trend.alpha={ALPHA}"])
    found, false_alarms = 0, 0
    for seed in range(200):
        with_surge = write_scored(stream(pool, 1000 + seed, surge=SURGE), tmp_path / f"s{seed}", parts=1)
        report = analyse(cfg, with_surge)
        found += any(a["group"] == {"ticker": "KONE"} for a in report["alerts"])
        quiet = write_scored(stream(pool, 5000 + seed), tmp_path / f"q{seed}", parts=1)
        false_alarms += bool(analyse(cfg, quiet)["alerts"])
        shutil.rmtree(with_surge)
        shutil.rmtree(quiet)
    allowed = int(stats.binom.ppf(0.99, 200, ALPHA))
    print(f"surge found in {found}/200 streams; any alert in {false_alarms}/200 quiet streams (allowed {allowed})")
    assert found >= 190
    assert false_alarms <= allowed


def test_each_alert_reaches_the_receiver_once_by_url_and_by_the_flows_notification_block(pool, tmp_path):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.trend import trend

    scored = write_scored(stream(pool, seed=7, surge=SURGE), tmp_path / "scored")
    with json_receiver() as (url, bodies, _):
        first = trend_cli(scored, tmp_path / "out", "--notify", url)
        second = trend_cli(scored, tmp_path / "out", "--notify", url)
        assert first.exit_code == second.exit_code == 2, first.output
        assert "alert sent: url:" in first.output and "1 alert(s) sent before, not again" in second.output
        assert len(bodies) == 1
        body = bodies[0]
        assert body["group"] == {"ticker": "KONE"} and body["window"]["start"].startswith("2026-01-10")
        assert body["share"] > body["baseline"]["share"] and body["p_value"] <= body["q_value"] <= ALPHA
        assert len(body["examples"]) == 5 and body["examples"][0]["text"]

        CustomWebhookNotificationBlock(
            name="trend", url=url, form_data="{{body}}", headers={"Content-Type": "application/json"}
        ).save("it-trend-alerts", overwrite=True)
        sets = ["trend.notify_block=custom-webhook/it-trend-alerts", f"trend.output={tmp_path / 'flow'}"]
        sets.append(f"paths.write_roots=[., {tmp_path}]")
        runs = [trend(str(scored), overrides=sets, time_column="published_at", by=["ticker"]) for _ in range(2)]
    assert [len(run["notified"]["sent"]) for run in runs] == [1, 0] and runs[0]["verdict"] == "surge"
    assert len(bodies) == 2  # the block delivers the same JSON (but the link to its own report)
    assert bodies[1].pop("report").startswith(str(tmp_path / "flow")) and body.pop("report")
    assert bodies[1] == body


def test_bad_input_gets_one_line_not_a_traceback(pool, tmp_path):
    frame = stream(pool, seed=3, days=2)
    scored = write_scored(frame, tmp_path / "scored")
    sets = ["--set", f"trend.output={tmp_path / 'out'}", "--set", f"paths.write_roots=[., {tmp_path}]"]
    result = runner.invoke(app, ["trend", str(scored), *sets])
    assert result.exit_code == 1 and "error: no time column: give --time-column" in result.output
    result = trend_cli(scored, tmp_path / "out", "--label", "bearish")
    assert result.exit_code == 1 and "the model has no label 'bearish'" in result.output
    assert "negative, neutral, positive" in result.output and "Traceback" not in result.output
    frame["published_at"] = frame["published_at"].astype(str).where(frame.index != 5, "yesterday")
    result = trend_cli(write_scored(frame, tmp_path / "bad", parts=1), tmp_path / "out")
    assert result.exit_code == 1 and "part-stream-000000.parquet row 6: 'published_at' is 'yesterday'" in result.output
    quiet = trend_cli(scored, tmp_path / "out")  # two days: no baseline of 100 rows yet
    assert quiet.exit_code == 0 and "verdict: no verdict" in quiet.output
    assert not (tmp_path / "scored" / "trend_alerts.json").exists()
