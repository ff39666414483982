"""The decide step: retrain or skip, from the data and config hashes on the registered champion and challenger."""

from pathlib import Path

import pytest

from pipeline_lib.config import load_config
from pipeline_lib.data.versions import file_md5
from pipeline_lib.steps.decide import retrain_decision


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
    from pipeline_lib.registry import store

    client = store.connect(cfg)
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
