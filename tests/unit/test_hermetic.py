"""No test reads or writes the repository's store, artifacts or caches (tests/conftest.py): the working directory
is a temporary folder, every default path of the config resolves inside it, and the session checks at its end
that the repository's user state is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline_lib.config import load_config
from pipeline_lib.roots import config_paths
from tests.conftest import REPO, changes, user_state


def test_every_default_path_resolves_outside_the_repository(private_working_directory: Path):
    assert Path.cwd() == private_working_directory and not Path.cwd().is_relative_to(REPO)
    cfg = load_config(None)
    written = [use for use in config_paths(cfg) if use.mode == "write"]
    assert {use.field for use in written} >= {"paths.store", "paths.artifacts"}
    for use in written:
        assert use.path.is_relative_to(private_working_directory), use
    assert cfg.paths.cache_dir.is_relative_to(private_working_directory)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "TUNEPIPE_OPTUNA_STORAGE" not in os.environ


def test_the_snapshot_sees_what_a_run_would_leave(tmp_path: Path):
    before = user_state(tmp_path)
    (tmp_path / ".tunepipe" / "cache").mkdir(parents=True)
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "run.json").write_text("{}")
    assert changes(before, user_state(tmp_path)) == [
        "created .tunepipe",
        "created .tunepipe/cache",
        "created artifacts",
        "created artifacts/run.json",
    ]
    middle = user_state(tmp_path)
    (tmp_path / "artifacts" / "run.json").write_text('{"a": 1}')
    assert "modified artifacts/run.json" in changes(middle, user_state(tmp_path))
