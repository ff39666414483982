"""Quiet, offline, isolated test runs: no hub, no telemetry, a private Prefect home per session, and a private
working directory, so that no test reads or writes the repository's store, artifacts or caches (the session fails
when it finds them changed at its end)."""

from __future__ import annotations

import os

# Two test workers, each with its own child processes, on a machine of a few cores: an OpenMP thread that waits
# for work must sleep, not spin (GNU OpenMP's default), or it burns the core another worker's training needs. Set
# before torch loads its OpenMP runtime; children inherit it. Measured on 2 cores (AVX2): the whole suite 1523 s ->
# 1308 s wall, 39.2 -> 31.6 CPU minutes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import atexit
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_lib.environment import apply_quiet_env
from tests.scratch import remove, remove_new_entries, shared_cache_folder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

apply_quiet_env()
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("TUNEPIPE_OPTUNA_STORAGE", None)  # else `tune` tests would write a team's study database
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tunepipe-prefect-")
atexit.register(remove, Path(os.environ["PREFECT_HOME"]))
os.environ["TUNEPIPE_PREFECT_KEEP_S"] = "0"  # no Prefect server outlives its command (tests of keeping set their own)


# What a user's own runs leave in the working directory (`make run`, `tunepipe ...`): the defaults of
# `paths.store` / `paths.artifacts` / `paths.cache`, MLflow's and Prefect's local folders, DVC's cache.
USER_STATE = (".tunepipe", "artifacts", "mlruns", "mlartifacts", "mlflow.db", ".prefect", ".dvc/cache", ".dvc/tmp")


def user_state(root: Path = REPO) -> dict[str, tuple[int, int]]:
    """Every file and folder of USER_STATE under `root`, with its modification time and size."""
    found = {}
    for name in USER_STATE:
        top = root / name
        for path in [top, *top.rglob("*")] if top.is_dir() else [top] if top.exists() else []:
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size if path.is_file() else 0)
    return found


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """What differs between two `user_state` snapshots, one line each."""
    lines = [f"created {path}" for path in sorted(after.keys() - before.keys())]
    lines += [f"deleted {path}" for path in sorted(before.keys() - after.keys())]
    lines += [f"modified {path}" for path in sorted(before.keys() & after.keys()) if before[path] != after[path]]
    return lines


def pytest_configure(config: pytest.Config) -> None:
    """Name the xdist test run here (the controller), so that its shared step cache can be removed at the end."""
    if hasattr(config.option, "testrunuid") and not hasattr(config, "workerinput") and not config.option.testrunuid:
        config.option.testrunuid = uuid.uuid4().hex


@pytest.fixture(scope="module", autouse=True)
def module_scratch_is_removed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """What a test module made under the session's temporary folder (its workspaces, stores, trained runs, each
    test's tmp_path) goes when the module ends, unless one of its tests failed (then it stays for a post-mortem)."""
    base = tmp_path_factory.getbasetemp()
    before = {entry.name for entry in base.iterdir()}
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        remove_new_entries(base, before)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Snapshot the repository's user state (in the xdist controller, or the only process)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[STATE_KEY] = user_state()


STATE_KEY = pytest.StashKey[dict]()


@pytest.fixture(scope="session", autouse=True)
def private_working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test starts in an empty temporary folder, not the repository: every default path of the config
    (`paths.store` .tunepipe, `paths.artifacts`, `paths.cache` under the store, the local MLflow sqlite store inside
    it, `tune`'s sqlite study beside it) resolves there. Tests that need the repository's files name them by REPO."""
    folder = tmp_path_factory.mktemp("cwd")
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly on machines without CUDA."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora beside the repository (never copied into it); tests skip without them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if the repository's user state changed while it ran. And: Prefect stops its ephemeral
    server at interpreter exit and logs it to a stream pytest has already closed; don't print a traceback for that."""
    import logging

    logging.raiseExceptions = False
    run_id = getattr(session.config.option, "testrunuid", None)
    if run_id and not hasattr(session.config, "workerinput"):
        remove(shared_cache_folder(run_id))
    before = session.config.stash.get(STATE_KEY, None)
    found = changes(before, user_state()) if before is not None else []
    if found:
        shown = "\n  ".join(found[:20]) + (f"\n  ... and {len(found) - 20} more" if len(found) > 20 else "")
        sys.stderr.write(f"\nthe test session changed the repository's store, artifacts or caches:\n  {shown}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
