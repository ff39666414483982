"""`tunepipe reproduce` in a throw-away git + DVC project that versions tunepipe's code and its data (local DVC
remote): the champion, registered from a clean commit, is rebuilt from its lineage alone and its test metrics come
out exactly equal on CPU, from the commit's own code; a version registered from a dirty work tree is refused unless
--allow-dirty; a data version that is in neither the DVC cache nor the remote fails with a message naming it. The
registry and the repository's worktrees are the same after each run as before."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import _print_reproduction, app
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET, dvc_pointer_md5
from pipeline_lib.layout import RunDir, new_run
from pipeline_lib.registry import ledger, store
from pipeline_lib.steps import STEPS, run_step

from .conftest import cli_sets, overrides
from .repos import sh, versioned_project
from .servers import REPO

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
DATA = "data/sample.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunDir]]:
    """The project at one commit (this checkout's code, a 90-row DVC-tracked slice pushed to a local remote), and
    the champion registered from it (a few training steps, on CPU)."""
    root = tmp_path_factory.mktemp("reproducible")
    for folder in ("pipeline_lib", "flows", "tasks"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data").mkdir()
    pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(30).to_csv(root / DATA, index=False)
    (root / ".gitignore").write_text(".tunepipe/\nartifacts/\n__pycache__/\n")
    versioned_project(root, DATA)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = load_config(None, overrides())
        run = new_run(cfg.paths.artifacts)
        for name in STEPS:
            run_step(name, cfg, run)
        yield root, run


def reproduce(root: Path, *args: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return runner.invoke(app, ["reproduce", *args, *cli_sets()])


def registry_state(root: Path) -> dict:
    """Everything reproduce must leave alone: versions with their tags and aliases, runs, the ledger, worktrees."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        client = store.connect(load_config(None, overrides()))
        versions = {
            str(v.version): (dict(v.tags), sorted(v.aliases)) for v in client.search_model_versions(f"name='{NAME}'")
        }
        runs = sorted(r.info.run_id for r in client.search_runs([store.experiment_id(load_config(None), client)]))
        return {"versions": versions, "runs": runs, "ledger": ledger.read(client, NAME), "worktrees": worktrees(root)}


def worktrees(root: Path) -> str:
    return sh(root, "git", "worktree", "list", "--porcelain")


def test_reproduce_the_champion_exactly_from_its_commit(project, capsys: pytest.CaptureFixture):
    root, run = project
    before = registry_state(root)

    result = reproduce(root, f"{NAME}@champion", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["reproduced"] is True, report["reason"]
    assert report["tolerance"] == 0 and report["tolerance_reason"] == "exact: both runs on CPU"
    recorded = json.loads(run.metrics.read_text())
    assert {row["metric"] for row in report["metrics"]} >= {"accuracy", "macro_f1"}
    assert all(row["diff"] == 0 and row["recorded"] == row["reproduced"] for row in report["metrics"])
    assert next(r for r in report["metrics"] if r["metric"] == "accuracy")["reproduced"] == recorded["accuracy"]
    assert report["history"]["max_diff"] == 0 and report["history"]["values"] >= 3, "same losses, epoch by epoch"
    assert all(split["same"] for split in report["splits"].values()) and len(report["splits"]) == 3
    assert report["libraries_recorded"] is True and report["libraries"] == {}
    assert report["environment"]["device"] == {"recorded": "cpu", "reproduced": "cpu"}
    commit = sh(root, "git", "rev-parse", "HEAD").strip()
    assert report["commit"] == commit and f"commit {commit[:12]}" in report["code"]
    assert "/worktree/pipeline_lib" in report["code"] and str(REPO) not in report["code"], "the commit's code ran"
    md5 = dvc_pointer_md5(root / DATA)
    assert report["data"] == f"{DATA} md5 {md5} from DVC (cache or remote) as committed at {commit[:12]}"
    assert registry_state(root) == before, "the registry and the worktrees are untouched"
    assert "[train]" in result.output and "[evaluate]" in result.output  # progress, on stderr

    _print_reproduction(report)  # what the command prints without --json
    table = capsys.readouterr().out
    assert f"financial-sentiment v1 rebuilt from commit {commit[:12]}" in table
    assert "REPRODUCED (tolerance 0, exact: both runs on CPU)" in table and "DIFFERS" not in table
    assert "libraries: the same versions as recorded" in table and "max |diff| 0.00e+00" in table


def test_a_version_registered_from_a_dirty_tree_is_refused_unless_allowed(project):
    root, run = project
    readme = root / "flows" / "__init__.py"
    original = readme.read_text()
    readme.write_text(original + "# a local edit\n")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            registered = run_step("register", load_config(None, overrides()), run)  # v2, from the dirty tree
    finally:
        readme.write_text(original)
    assert registered.version == "2"
    before = registry_state(root)

    result = reproduce(root, f"{NAME}/2")

    assert result.exit_code == 1
    assert "registered from a work tree with uncommitted changes (git.dirty=True)" in result.output
    assert "--allow-dirty" in result.output
    assert registry_state(root) == before


def test_missing_data_version_fails_clearly_and_changes_nothing(project):
    root, _ = project
    md5 = dvc_pointer_md5(root / DATA)
    stored = [
        base / "files" / "md5" / md5[:2] / md5[2:]
        for base in (root / ".dvc" / "cache", root.parent / f"{root.name}-remote")
    ]
    assert all(path.is_file() for path in stored)
    aside = [path.rename(path.with_name(path.name + ".aside")) for path in stored]
    before = registry_state(root)
    try:
        for args in ([f"{NAME}@champion"], [f"{NAME}/2", "--allow-dirty"]):
            result = reproduce(root, *args)
            assert result.exit_code == 1, result.output
            assert f"data version {md5} of {DATA}" in result.output
            assert "is in neither the DVC cache nor the remote" in result.output and "dvc push" in result.output
            assert "git.dirty" not in result.output, "--allow-dirty got past the dirty check"
            assert registry_state(root) == before
    finally:
        for moved, path in zip(aside, stored, strict=True):
            moved.rename(path)
