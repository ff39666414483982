"""`tunepipe tune` end to end on a tiny slice, all real: Optuna's sqlite storage, the MLflow sqlite store, Prefect's
ephemeral API, training of the packaged model. A 3-trial study is killed (SIGKILL) in its second trial and resumed;
the trial forced to be bad is pruned; trials are MLflow runs nested under the study's; the test split is poisoned
before the resumed trials and never read; the overlay trains a registered champion whose lineage names the study.
Then: trials fanned out to two worker processes, and the retrain flow's re-tune every K data versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.layout import RunDir
from pipeline_lib.registry import store
from pipeline_lib.training import tuning

from .servers import BIN, child_env

pytestmark = pytest.mark.integration
runner = CliRunner()
NAME = "financial-sentiment"
STUDY = "tiny"
BAD_LR = 1.0e-9  # the trial forced to be bad: it learns nothing, and is pruned after its first validation pass
BASE = {
    "data": {"path": "data/sample.csv", "split": {"method": "stratified"}},
    "model": {"max_length": 24},
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 3.0e-4,
        "warmup_ratio": 0.0,
        "early_stopping_patience": 0,
        "num_threads": 1,
    },
    "gates": {"floors": {}, "latency_samples": 10},
    "export": {"select_runtime": False},
    "tune": {
        "study": STUDY,
        "trials": 3,
        "space": {
            "train.learning_rate": {"low": BAD_LR, "high": 5.0e-4, "log": True},
            "train.weight_decay": {"low": 0.0, "high": 0.1},
        },
        "enqueue": [{"train.learning_rate": BAD_LR}],
        "startup_trials": 1,
        "pruner_startup_trials": 1,
        "pruner_warmup_epochs": 0,
        "heartbeat_s": 2,
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    (root / "data").mkdir()
    pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(20).to_csv(root / "data/sample.csv", index=False)
    (root / "base.yaml").write_text(yaml.safe_dump(BASE))
    return root


def cfg_of(project: Path, *overrides: str):
    return load_config(project / "base.yaml", list(overrides))


def study_of(project: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{project / '.tunepipe' / 'optuna.db'}")


def wait_for_trial(number: int, proc: subprocess.Popen, log: Path, limit: float = 600) -> None:
    """Until the search logs the start of trial `number` (its params drawn, its model not loaded yet)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tunepipe tune ended early:\n{log.read_text()[-3000:]}"
        if f"trial {number}: learning_rate=" in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"trial {number} never started:\n{log.read_text()[-3000:]}")


@pytest.fixture(autouse=True)
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


@pytest.fixture(scope="module")
def searched(project: Path) -> dict:
    """Phase 1: `tunepipe tune` in its own process, SIGKILLed while trial 1 runs. Phase 2: the test split replaced by
    a file that fails loudly when read; `tunepipe tune` again continues the study to 3 finished trials."""
    log = project / "tune-killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [f"{BIN}/tunepipe", "tune", "--config", "base.yaml"],
            cwd=project,
            env=child_env(PYTHONUNBUFFERED="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_trial(1, proc, log)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    base = RunDir(project / "artifacts" / "tune" / STUDY / "base")
    validated = base.validation_report.stat().st_mtime_ns
    before = {t.number: t.state for t in study_of(project).get_trials(deepcopy=False)}
    poison = b"not parquet: the search must never read the test split"
    base.split_file("test").write_bytes(poison)

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        result = runner.invoke(app, ["tune", "--config", "base.yaml", "--json"])
    assert result.exit_code == 0, result.output
    return {
        "before": before,
        "result": json.loads(result.stdout),
        "base": base,
        "validated": validated,
        "poison": poison,
        "killed_log": log.read_text(),
    }


def test_a_killed_search_resumes_where_it_stopped_and_retries_the_killed_trial(searched: dict, project: Path):
    assert searched["before"] == {0: TrialState.COMPLETE, 1: TrialState.RUNNING}
    trials = study_of(project).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states[:3] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3 and len(trials) == 4
    retry = trials[2]
    assert retry.system_attrs["failed_trial"] == 1 and retry.params == trials[1].params
    counts = searched["result"]["trials"]
    assert counts["fail"] == 1 and counts.get("complete", 0) + counts.get("pruned", 0) == 3
    assert searched["base"].validation_report.stat().st_mtime_ns == searched["validated"]  # validated once


def test_the_trial_forced_to_be_bad_is_pruned_after_its_first_validation_pass(searched: dict, project: Path):
    trials = study_of(project).get_trials(deepcopy=False)
    assert trials[0].params["train.learning_rate"] == 3.0e-4 and trials[0].user_attrs["enqueued"] == "baseline"
    pruned = trials[2]
    assert pruned.params["train.learning_rate"] == BAD_LR and pruned.state == TrialState.PRUNED
    assert list(pruned.intermediate_values) == [1] and list(trials[0].intermediate_values) == [1, 2]
    assert pruned.intermediate_values[1] < trials[0].intermediate_values[1]


def test_trials_are_mlflow_runs_nested_under_the_studys_run(searched: dict, project: Path):
    client = store.connect(cfg_of(project))
    parent = client.get_run(searched["result"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["tune.kind"] == "study"
    assert parent.data.params["tune.trials"] == "3" and "tune.space.train.learning_rate.low" in parent.data.params
    assert parent.data.metrics["best.trial"] == searched["result"]["best_trial"]
    children = {
        int(run.data.tags["tune.trial"]): run
        for run in client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    }
    assert sorted(children) == [0, 1, 2, 3]
    assert children[1].info.status == "KILLED" and children[1].data.tags["tune.state"] == "FAIL"
    assert children[2].data.tags["tune.state"] == "PRUNED" and children[2].data.tags["tune.retry_of"] == "1"
    assert float(children[0].data.params["train.learning_rate"]) == 3.0e-4
    history = client.get_metric_history(children[0].info.run_id, "val_macro_f1")
    assert [m.step for m in history] == [1, 2]
    assert [m.step for m in client.get_metric_history(children[2].info.run_id, "val_macro_f1")] == [1]


def test_the_search_never_reads_the_test_split(searched: dict, project: Path):
    base = searched["base"]
    assert json.loads((base.tokenized / "dataset_dict.json").read_text())["splits"] == ["train", "validation"]
    assert base.split_file("test").read_bytes() == searched["poison"]  # the resumed trials ran with it in place
    for trial in (project / "artifacts" / "tune" / STUDY / "trials").iterdir():
        files = {
            p.relative_to(trial).as_posix() for p in trial.rglob("*") if p.is_file() and "tokenized" not in p.parts
        }
        assert files <= {"train/history.json", "train/summary.json"}, files  # no model kept, no data, no eval
        assert (trial / "tokenized").resolve() == base.tokenized.resolve()


def test_the_overlay_trains_a_registered_model_whose_lineage_names_the_study(searched: dict, project: Path):
    result = searched["result"]
    overlay = project / result["overlay"]
    assert overlay == project / "configs" / "tuned" / f"{STUDY}.yaml"
    assert result["command"] == f"tunepipe run --config base.yaml --config configs/tuned/{STUDY}.yaml"
    tuned = load_config([project / "base.yaml", overlay])
    assert tuned.train.learning_rate == result["params"]["train.learning_rate"]
    assert tuned.tune.origin.study == STUDY and tuned.tune.origin.trial == result["best_trial"]

    run = runner.invoke(app, ["run", "--config", "base.yaml", "--config", str(overlay.relative_to(project))])
    assert run.exit_code == 0, run.output
    info = json.loads(runner.invoke(app, ["lineage", f"{NAME}@champion", "--json", "-c", "base.yaml"]).output)
    assert info["tuned"]["study"] == STUDY and info["tuned"]["trial"] == result["best_trial"]
    assert info["tuned"]["data_md5"] == study_of(project).user_attrs["data_md5"]
    assert info["config"]["train"]["learning_rate"] == result["params"]["train.learning_rate"]
    text = runner.invoke(app, ["lineage", f"{NAME}@champion", "-c", "base.yaml"]).output
    assert f"tuned: study {STUDY} trial {result['best_trial']}" in text
    # the champion, trained by the normal flow with the best trial's values and seed, selects what the trial did
    client = store.connect(cfg_of(project))
    history = client.get_metric_history(info["run_id"], "val_macro_f1")
    assert max(m.value for m in history) == pytest.approx(result["best_value"], abs=1e-9)


def test_a_study_continued_on_other_settings_is_refused_and_left_as_it_was(searched: dict, project: Path):
    count = len(study_of(project).trials)
    refused = runner.invoke(app, ["tune", "--config", "base.yaml", "--set", "train.seed=7"])
    assert refused.exit_code == 1
    assert "was searched with different settings" in refused.output and "--name" in refused.output
    assert len(study_of(project).trials) == count
    rerun = runner.invoke(app, ["tune", "--config", "base.yaml", "--json"])  # finished already: only the overlay
    assert rerun.exit_code == 0 and len(study_of(project).trials) == count


def test_trials_fan_out_to_worker_processes_when_tune_parallel_asks(searched: dict, project: Path):
    sets = ["--set", "tune.parallel=2", "--set", "tune.trials=2", "--set", "tune.enqueue=[]"]
    result = runner.invoke(app, ["tune", "--config", "base.yaml", "--name", "fanned", *sets, "--json"])
    assert result.exit_code == 0, result.output
    trials = study_of(project, "fanned").get_trials(deepcopy=False)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(trials) == 2 and len(workers) == 2 and f":{os.getpid()}" not in " ".join(workers)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert (project / "configs" / "tuned" / "fanned.yaml").is_file()


def test_the_scheduled_retrain_searches_again_every_k_data_versions(searched: dict, project: Path):
    from flows.retrain import retrain

    sets = ["tune.retune_every=1", "tune.trials=1", "tune.enqueue=[]"]
    same = retrain([str(project / "base.yaml")], sets)
    assert same["skipped"] and not same["retune"]["retune"] and same["retune"]["study"] == STUDY
    assert "0 of 1 new data version(s) since study tiny" in same["retune"]["reason"]

    sample = project / "data" / "sample.csv"
    more = pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).nth(list(range(20, 23)))
    pd.concat([pd.read_csv(sample), more]).to_csv(sample, index=False)
    new = retrain([str(project / "base.yaml")], sets)
    plan = new["retune"]
    assert plan["retune"] and plan["versions_since"] == 1 and plan["study"].startswith(f"{STUDY}-")
    assert not new["skipped"] and new["registered"]["version"] == "2"
    tags = store.connect(cfg_of(project)).get_model_version(NAME, "2").tags
    assert tags["tune.study"] == plan["study"] and tags["tune.data_md5"] == plan["data_md5"] == tags["data.md5"]
    assert (project / "configs" / "tuned" / f"{plan['study']}.yaml").is_file()
    assert tuning.finished_count(study_of(project, plan["study"])) == 1
