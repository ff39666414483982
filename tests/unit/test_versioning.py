import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline_lib.config import load_config
from pipeline_lib.versioning import (
    SEED_DATASET,
    content_md5,
    dvc_pointer_md5,
    ensure_data,
    file_md5,
    git_state,
    retrain_decision,
)

REPO = Path(__file__).resolve().parents[2]


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.email", "t@example.com")
    sh(tmp_path, "git", "config", "user.name", "t")
    sh(tmp_path, "dvc", "init", "-q")
    sh(tmp_path, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    return tmp_path


def test_hashes_agree_with_dvc_for_files_and_directories(dvc_repo: Path):
    (dvc_repo / "one.csv").write_text("text,label\nup,positive\n")
    folder = dvc_repo / "splits"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.csv").write_text("text,label\nx,neutral\n")
    (folder / "nested" / "b.csv").write_text("text,label\ny,negative\n")
    sh(dvc_repo, "dvc", "add", "-q", "one.csv", "splits")
    for name in ("one.csv", "splits"):
        recorded = yaml.safe_load((dvc_repo / f"{name}.dvc").read_text())["outs"][0]["md5"]
        assert content_md5(dvc_repo / name) == recorded
        assert dvc_pointer_md5(dvc_repo / name) == recorded


def test_default_dataset_pointer_matches_packaged_seed():
    assert dvc_pointer_md5(REPO / "data" / "financial_sentiment.csv") == file_md5(SEED_DATASET)


def test_ensure_data_restores_seed_and_pushes_to_remote(dvc_repo: Path, monkeypatch):
    data = dvc_repo / "data" / "financial_sentiment.csv"
    data.parent.mkdir()
    shutil.copyfile(SEED_DATASET, data)
    sh(dvc_repo, "dvc", "add", "-q", str(data))
    data.unlink()
    shutil.rmtree(dvc_repo / ".dvc" / "cache", ignore_errors=True)
    monkeypatch.chdir(dvc_repo)
    cfg = load_config(None)
    assert "restored from the packaged seed" in ensure_data(cfg)
    assert file_md5(data) == file_md5(SEED_DATASET)
    # now the local remote holds it: a second loss is repaired by a plain dvc pull
    data.unlink()
    shutil.rmtree(dvc_repo / ".dvc" / "cache", ignore_errors=True)
    assert "pulled from the DVC remote" in ensure_data(cfg)


def test_ensure_data_refuses_unknown_missing_data(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"nope\.csv: no such file"):
        ensure_data(load_config(None, ["data.path=nope.csv"]))


def test_git_state_outside_and_inside_a_repo(tmp_path_factory, dvc_repo: Path):
    outside = tmp_path_factory.mktemp("not-a-repo")
    assert git_state(outside) == {"commit": "unknown", "dirty": None}
    (dvc_repo / "f.txt").write_text("x")
    sh(dvc_repo, "git", "add", "-A")
    sh(dvc_repo, "git", "commit", "-qm", "init")
    state = git_state(dvc_repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (dvc_repo / "f.txt").write_text("y")
    assert git_state(dvc_repo)["dirty"] is True


# --- retrain decision: the data hash and config hash against the registered versions' tags ---------------


@pytest.fixture
def registry_store(tmp_path: Path, monkeypatch) -> Path:
    """A private MLflow sqlite store and a data file, as the working directory. The store goes through
    MLFLOW_TRACKING_URI because mlflow.set_tracking_uri exports it: monkeypatch restores it afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "data.csv").write_text("text,label\nup,positive\n")
    return tmp_path


def _cfg(*extra: str):
    return load_config(None, ["data.path=data.csv", *extra])


def _register(cfg, alias: str, data_md5: str, config_hash: str) -> str:
    from pipeline_lib import registry

    client = registry.connect(cfg)
    name = cfg.registry.model_name
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=str(Path.cwd()), tags={"data.md5": data_md5, "config.hash": config_hash}
    )
    client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def test_decision_without_a_champion_retrains(registry_store: Path):
    decision = retrain_decision(_cfg())
    assert decision.retrain and "no champion yet" in decision.reason
    assert decision.data_md5 == file_md5(registry_store / "data.csv")


def test_decision_skips_when_champion_has_the_same_data_and_config(registry_store: Path):
    cfg = _cfg()
    version = _register(cfg, "champion", file_md5(registry_store / "data.csv"), cfg.config_hash())
    decision = retrain_decision(cfg)
    assert not decision.retrain
    assert f"v{version} is the champion" in decision.reason and "nothing changed" in decision.reason
    assert "--force" in decision.reason
    forced = retrain_decision(cfg, force=True)
    assert forced.retrain and "--force" in forced.reason


def test_decision_retrains_on_new_data_and_names_both_hashes(registry_store: Path):
    cfg = _cfg()
    old = file_md5(registry_store / "data.csv")
    _register(cfg, "champion", old, cfg.config_hash())
    (registry_store / "data.csv").write_text("text,label\nup,positive\ndown,negative\n")
    decision = retrain_decision(cfg)
    assert decision.retrain
    assert f"data changed ({old[:12]} → {file_md5(registry_store / 'data.csv')[:12]})" in decision.reason
    assert "since v1 (@champion)" in decision.reason


def test_decision_retrains_on_a_new_config(registry_store: Path):
    cfg = _cfg()
    _register(cfg, "champion", file_md5(registry_store / "data.csv"), cfg.config_hash())
    decision = retrain_decision(_cfg("train.learning_rate=1e-4"))
    assert decision.retrain and "config changed" in decision.reason and "data changed" not in decision.reason


def test_decision_skips_data_already_refused_as_challenger(registry_store: Path):
    cfg = _cfg()
    _register(cfg, "champion", "0" * 32, cfg.config_hash())
    refused = _register(cfg, "challenger", file_md5(registry_store / "data.csv"), cfg.config_hash())
    decision = retrain_decision(cfg)
    assert not decision.retrain and f"v{refused} was refused as challenger" in decision.reason
    assert decision.compared_with == {"champion": "1", "challenger": refused}
