"""A throw-away workspace: a slice of the packaged dataset, a private MLflow sqlite store and artifacts."""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.data.versions import SEED_DATASET
from tests.scratch import remove, shared_cache_folder


# A few steps on a tiny slice, no quality floors; the serving runtime is not chosen by timing (test_flow.py and
# test_runtimes.py cover that choice; elsewhere it only adds ~10 s per export), and the latency gate times 10 texts.
# One step cache for the whole session: runs with the same data and config (most tests train the same tiny slice)
# reuse each other's tokenized data, trained model and export instead of training again. Tests about the cache
# itself, or about training as it runs, take `PRIVATE_CACHE`.
def _session_cache() -> Path:
    """One folder per test run, the same in every pytest-xdist worker of it (their run id; the controller removes
    it at the end, `tests/conftest.py`), else a fresh one removed when the process exits."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id:
        folder = Path(tempfile.mkdtemp(prefix="tunepipe-test-cache-"))
        atexit.register(remove, folder)
        return folder
    folder = shared_cache_folder(run_id)
    folder.mkdir(exist_ok=True)
    return folder


SESSION_CACHE = _session_cache()
SHARED_CACHE = [f"paths.cache={SESSION_CACHE}", f"paths.write_roots=[., {SESSION_CACHE}]"]
PRIVATE_CACHE = ["paths.cache=null", "paths.write_roots=[.]"]
FAST_RUN = [
    "train.max_steps=6",
    "train.batch_size=8",
    "train.learning_rate=1e-4",
    "train.early_stopping_patience=0",
    "gates.floors={}",
    "gates.latency_samples=10",
    "export.select_runtime=false",
    *SHARED_CACHE,
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with `data/sample.csv` (30 rows per label) and room for the store."""
    root = tmp_path_factory.mktemp("workspace")
    sample = pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(30)
    (root / "data").mkdir()
    sample.to_csv(root / "data" / "sample.csv", index=False)
    return root


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    return workspace


def overrides(*extra: str) -> list[str]:
    return ["data.path=data/sample.csv", *FAST_RUN, *extra]


def cli_sets(*extra: str) -> list[str]:
    """The same overrides as `--set` options for the CLI."""
    return [arg for item in overrides(*extra) for arg in ("--set", item)]
