import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET, content_md5, dvc_pointer_md5, ensure_data, file_md5, git_state

REPO = Path(__file__).resolve().parents[3]


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
