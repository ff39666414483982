"""Retraining that knows the data, on the real flow (Prefect ephemeral API, MLflow sqlite, tiny slice):
unchanged data and config skip with the reason; forced reruns are served from the content-hash cache with the
files restored into the new run directory; a gates-only change re-runs only what reads the gates."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.retrain import retrain
from pipeline_lib.data.versions import file_md5

from .conftest import PRIVATE_CACHE, overrides

pytestmark = pytest.mark.integration
CACHEABLE = ["validate", "tokenize", "train", "export", "evaluate"]


def run_flow(*extra: str, force: bool = False) -> tuple[dict, dict[str, str]]:
    """The flow's outcome and each task run's final state name (Completed, or Cached when served from cache)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = retrain(None, overrides(*PRIVATE_CACHE, *extra), force=force, return_state=True)
    outcome = state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return outcome, {run.name.rsplit("-", 1)[0]: run.state_name for run in runs}


@pytest.fixture(scope="module")
def workdir(workspace: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / '.tunepipe' / 'mlflow.db'}")
        yield workspace


@pytest.fixture(scope="module")
def first(workdir: Path) -> tuple[dict, dict[str, str]]:
    return run_flow()


def test_first_run_runs_every_step(first):
    outcome, states = first
    assert not outcome["skipped"] and "no champion yet" in outcome["reason"]
    assert {name: states[name] for name in CACHEABLE} == dict.fromkeys(CACHEABLE, "Completed")
    assert outcome["registered"]["version"] == "1" and outcome["registered"]["promoted"]


def test_unchanged_data_and_config_skip_with_the_reason(first, workdir: Path):
    outcome, states = run_flow()
    assert outcome["skipped"] is True
    assert "nothing changed" in outcome["reason"] and "v1 is the champion" in outcome["reason"]
    assert file_md5(workdir / "data" / "sample.csv")[:12] in outcome["reason"]
    assert set(states) == {"decide"}


def test_forced_rerun_is_served_from_cache_with_files_restored(first, workdir: Path):
    outcome, states = run_flow(force=True)
    # validate runs again: its drift check now has a champion (v1) to compare with; its splits are the same, so
    # every later step is served from the cache
    assert {name: states[name] for name in CACHEABLE} == {"validate": "Completed"} | dict.fromkeys(
        CACHEABLE[1:], "Cached"
    )
    assert states["gate"] == states["register"] == "Completed"
    assert outcome["registered"]["version"] == "2"
    old, new = Path(first[0]["run_dir"]), Path(outcome["run_dir"])
    for rel in ("model/model.safetensors", "onnx/model.onnx", "data/test.parquet", "eval/metrics.json"):
        assert file_md5(new / rel) == file_md5(old / rel), rel


def test_gates_change_reruns_only_the_steps_that_read_gates(first, workdir: Path):
    outcome, states = run_flow("gates.min_improvement=0.2")
    assert not outcome["skipped"] and "config changed" in outcome["reason"]
    # export reads gates (its parity metric) and runs again; its graph is byte for byte the same, so evaluate,
    # which scores the test split through that graph, is served from the cache
    assert [states[name] for name in CACHEABLE] == ["Cached", "Cached", "Cached", "Completed", "Cached"]
    assert outcome["registered"]["version"] == "3" and not outcome["registered"]["promoted"]
