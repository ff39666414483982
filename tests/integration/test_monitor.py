"""Production monitoring end to end: a real `tunepipe serve` logs each prediction of a batch of requests (no raw
text); `tunepipe monitor` finds no drift when the requests are the champion's test split and a label-mix shift
when they are skewed (exit 2); the Prefect flow `monitor` then starts the retrain deployment on a real
(ephemeral) Prefect API, and starts nothing when there is no drift."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.layout import RunDir, new_run
from pipeline_lib.serving.prediction_log import text_sha256
from pipeline_lib.steps import STEPS, run_step

from .conftest import overrides
from .servers import call, tunepipe_serve, wait_for_log

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
MODEL = f"{NAME}@champion"
SETS = overrides("monitor.min_predictions=30")
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunDir]]:
    """A champion trained (a few steps) on the whole packaged sample, so that its test split has a few dozen
    sentences (enough for `monitor.min_predictions` when sent twice)."""
    root = tmp_path_factory.mktemp("monitored")
    (root / "data").mkdir()
    pd.read_csv(SEED_DATASET).to_csv(root / "data" / "sample.csv", index=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = load_config(None, SETS)
        run = new_run(cfg.paths.artifacts)
        for name in STEPS:
            run_step(name, cfg, run)
        yield root, run


@pytest.fixture(scope="module")
def server(project: tuple[Path, RunDir]) -> Iterator[str]:
    root, _ = project
    options = [arg for item in SETS for arg in ("--set", item)]
    with tunepipe_serve(root, MODEL, options, root.parent / f"{root.name}-serve.log") as base:
        yield base


@pytest.fixture(scope="module")
def windows() -> dict[str, str]:
    """Where each test's traffic starts (ISO times), shared by the tests of the module, which run in order."""
    return {}


def predict(server: str, texts: list[str]) -> list[dict]:
    rows = []
    for start in range(0, len(texts), 16):
        status, body = call(f"{server}/predict", {"texts": texts[start : start + 16]})
        assert status == 200, body
        rows += body["predictions"]
    return rows


def monitor(root: Path, *args: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return runner.invoke(app, ["monitor", MODEL, *args, *[a for s in SETS for a in ("--set", s)]])


def now_iso() -> str:
    time.sleep(0.01)  # strictly after the records before
    return datetime.now(timezone.utc).isoformat()


def test_serve_logs_every_prediction_and_monitor_sees_no_drift_on_the_test_split(project, server, windows):
    root, run = project
    texts = pd.read_parquet(run.split_file("test"))["text"].tolist() * 2  # the test split, twice
    windows["matching"] = now_iso()
    answered = predict(server, texts)

    log = wait_for_log(root / ".tunepipe" / "predictions", lambda log: len(log) == len(texts))
    assert list(log["text_sha256"]) == [text_sha256(t) for t in texts], "one record per prediction, in order"
    assert list(log["chars"]) == [len(t) for t in texts]
    assert list(log["label"]) == [row["label"] for row in answered]
    assert list(log["confidence"]) == [max(row["probabilities"].values()) for row in answered]
    assert set(log["version"]) == {"1"} and set(log["model"]) == {NAME} and log["text"].isna().all()
    raw = b"".join(p.read_bytes() for p in (root / ".tunepipe" / "predictions").glob("*.sqlite"))
    assert texts[0].encode() not in raw, "no raw text unless serve.log_texts"

    result = monitor(root, "--since", windows["matching"])
    assert result.exit_code == 0, result.output
    assert f"{NAME} v1: {len(texts)} predictions since" in result.output
    assert f"vs {len(texts) // 2} test sentences" in result.output
    assert "verdict: no drift" in result.output and "DRIFT" not in result.output
    for feature in ("label_mix", "confidence", "length", "low_confidence"):
        assert f"ok     {feature}" in result.output


def run_monitor_flow(root: Path, since: str, retrain_deployment: str) -> dict:
    from flows.monitor import monitor as monitor_flow

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return monitor_flow(MODEL, None, SETS, since, retrain_deployment)


def test_monitor_flow_starts_no_retrain_without_drift(project, server, windows):
    root, _ = project
    report = run_monitor_flow(root, windows["matching"], "retrain/it-monitor")
    assert report["verdict"] == "no drift" and report["retrain"] is None


def test_monitor_reports_a_label_mix_shift_when_requests_are_skewed(project, server, windows):
    root, run = project
    test = pd.read_parquet(run.split_file("test"))["text"].tolist()
    answered = predict(server, test)
    labels = pd.Series([row["label"] for row in answered])
    assert labels.nunique() > 1, f"the champion predicts one label only ({labels.iloc[0]}): no mix to skew"
    rare = labels.value_counts().index[-1]  # the champion's least frequent label on its test split
    skewed = [text for text, label in zip(test, labels, strict=True) if label == rare]
    windows["skewed"] = now_iso()
    predict(server, (skewed * 60)[:60])
    wait_for_log(root / ".tunepipe" / "predictions", lambda log: len(log) == 2 * len(test) + len(test) + 60)

    result = monitor(root, "--since", windows["skewed"], "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "drift" and report["live"] == 60
    label_mix = next(check for check in report["checks"] if check["feature"] == "label_mix")
    assert label_mix["drift"] and label_mix["p_value"] < 0.01
    assert label_mix["detail"].startswith(f"largest shift {rare} ") and "-> 100% (live: " in label_mix["detail"]
    text = monitor(root, "--since", windows["skewed"])
    assert text.exit_code == 2 and "DRIFT  label_mix" in text.output and "verdict: drift" in text.output


def test_monitor_flow_starts_the_retrain_deployment_on_drift(project, server, windows):
    from prefect.client.orchestration import get_client

    from flows.retrain import retrain

    root, _ = project
    with pytest.raises(ValueError, match="the retrain deployment 'retrain/it-monitor' does not exist"):
        run_monitor_flow(root, windows["skewed"], "retrain/it-monitor")
    deployment_id = retrain.to_deployment(name="it-monitor", parameters={"overrides": SETS}).apply()
    report = run_monitor_flow(root, windows["skewed"], "retrain/it-monitor")
    assert report["verdict"] == "drift" and report["retrain"]["deployment"] == "retrain/it-monitor"
    with get_client(sync_client=True) as client:
        started = client.read_flow_run(report["retrain"]["flow_run_id"])
    assert started.deployment_id == deployment_id and started.state.is_scheduled()
    assert started.parameters["overrides"] == SETS and "drift" in started.tags


def test_monitor_refuses_bad_input_clearly(project, server):
    root, _ = project
    result = monitor(root, "--since", "last tuesday")
    assert result.exit_code == 1 and "--since or monitor.since" in result.output
    assert "neither a duration (90s, 30m, 24h, 7d, 2w) nor an ISO time" in result.output
    result = monitor(root, "--set", "serve.log_path=elsewhere")
    assert result.exit_code == 1 and "no prediction log at" in result.output and "serve.log_path" in result.output
    assert not (root / "elsewhere").exists()
    quiet = monitor(root, "--since", now_iso())
    assert quiet.exit_code == 0 and "0 predictions since" in quiet.output
    assert "verdict: not enough predictions" in quiet.output
    result = monitor(root, "--retrain-deployment", "retrain/weekly")
    assert result.exit_code == 1 and "give --cron too" in result.output
    result = monitor(root, "--cron", "every day")
    assert result.exit_code == 1 and "not a cron expression" in result.output


def test_monitor_deployment_carries_its_cron_schedule_and_parameters(project):
    from prefect.client.orchestration import get_client

    from flows.monitor import deployment

    deployment_id = deployment(MODEL, "0 * * * *", None, SETS, "24h", "retrain/weekly", name="it-hourly").apply()
    with get_client(sync_client=True) as client:
        served = client.read_deployment(deployment_id)
    assert served.name == "it-hourly" and [s.schedule.cron for s in served.schedules] == ["0 * * * *"]
    assert served.parameters == {
        "model": MODEL,
        "config": None,
        "overrides": SETS,
        "since": "24h",
        "retrain_deployment": "retrain/weekly",
    }
