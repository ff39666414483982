import os

from pipeline_lib import registry
from pipeline_lib.config import load_config


def test_each_config_gets_its_own_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = load_config(None, [f"paths.store={tmp_path / 'a'}"])
    b = load_config(None, [f"paths.store={tmp_path / 'b'}"])
    registry.connect(a)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert registry.tracking_uri(b).endswith("/b/mlflow.db")
    assert registry.connect(b)._tracking_client.tracking_uri.endswith("/b/mlflow.db")


def test_user_environment_wins_over_the_local_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'team.db'}")
    cfg = load_config(None, [f"paths.store={tmp_path / 'local'}"])
    registry.connect(cfg)
    assert os.environ["MLFLOW_TRACKING_URI"].endswith("team.db")
    assert registry.tracking_uri(cfg).endswith("team.db")
