from pathlib import Path

import pytest

from pipeline_lib.config import ConfigError, PipelineConfig, apply_overrides, load_config

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_loads_and_matches_params_yaml():
    cfg = load_config(REPO / "configs" / "default.yaml")
    assert cfg.registry.model_name == "financial-sentiment"
    assert load_config(REPO / "params.yaml") == cfg, "params.yaml is stale: tunepipe config show > params.yaml"


def test_every_shipped_config_is_valid():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert isinstance(load_config(path), PipelineConfig), path


def test_the_mpnet_overlay_changes_the_model_and_its_recipe_and_keeps_the_data():
    base = load_config(REPO / "configs" / "financial_phrasebank.yaml")
    layered = load_config([REPO / "configs" / "financial_phrasebank.yaml", REPO / "configs" / "mpnet-base.yaml"])
    assert (layered.model.name, layered.train.epochs, layered.train.learning_rate) == ("mpnet-base", 3, 2e-5)
    assert layered.data == base.data and layered.model.max_length == base.model.max_length
    assert layered.gates.floors == base.gates.floors and layered.gates.max_model_mb == 450


def test_overrides_parse_yaml_values_and_nested_keys(tmp_path):
    cfg = load_config(None, ["train.epochs=2", "data.labels=[a, b]", "gates.floors={macro_f1: 0.9}"])
    assert cfg.train.epochs == 2
    assert cfg.data.labels == ["a", "b"]
    assert cfg.gates.floors == {"macro_f1": 0.9}


def test_overrides_do_not_mutate_input():
    raw = {"train": {"epochs": 3}}
    assert apply_overrides(raw, ["train.epochs=1"]) == {"train": {"epochs": 1}}
    assert raw == {"train": {"epochs": 3}}


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.epochs=-1", "train.epochs"),
        ("train.bogus=1", "train.bogus"),
        ("data.labels=[x]", "data.labels"),
        ("train.precision=int4", "train.precision"),
        ("noequals", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_config_hash_is_stable_and_sensitive():
    a, b = load_config(None), load_config(None)
    assert a.config_hash() == b.config_hash()
    assert load_config(None, ["train.seed=7"]).config_hash() != a.config_hash()


def test_config_hash_ignores_where_things_are_stored():
    a = load_config(None)
    b = load_config(None, ["paths.store=/elsewhere", "paths.artifacts=/tmp/x", "registry.tracking_uri=http://h:5000"])
    assert a.config_hash() == b.config_hash()


def test_monitor_window_is_a_duration_or_an_iso_time():
    from datetime import datetime, timedelta, timezone

    from pipeline_lib.config import window_start

    now = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
    assert window_start("24h", now) == now - timedelta(days=1)
    assert window_start("90s", now) == now - timedelta(seconds=90)
    assert window_start("2w", now) == now - timedelta(weeks=2)
    assert window_start("2025-03-01", now) == datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert window_start("2025-03-01T08:00+02:00", now) == datetime(2025, 3, 1, 6, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"neither a duration \(90s, 30m, 24h, 7d, 2w\) nor an ISO time"):
        window_start("last week", now)
    with pytest.raises(ValueError, match="lies in the future"):
        window_start("2025-04-01", now)
    with pytest.raises(ConfigError, match=r"monitor\.since"):
        load_config(None, ["monitor.since=yesterday"])
    with pytest.raises(ConfigError, match=r"monitor\.retrain_deployment: .*FLOW/DEPLOYMENT"):
        load_config(None, ["monitor.retrain_deployment=weekly"])


def test_config_hash_ignores_how_the_served_model_is_logged_and_monitored():
    a = load_config(None)
    b = load_config(None, ["serve.log_texts=true", "serve.log_path=logs", "monitor.p_value=0.05"])
    assert a.config_hash() == b.config_hash()


def test_each_task_takes_its_own_searched_recipe_unless_the_config_gives_one():
    classifier = load_config(None, [])
    tagger = load_config(None, ["task=token_classification"])
    assert (classifier.train.learning_rate, classifier.train.batch_size, classifier.train.epochs) == (5e-5, 16, 5)
    assert (tagger.train.learning_rate, tagger.train.batch_size, tagger.train.epochs) == (1.4e-4, 32, 4)
    assert tagger.train.metric_for_best_model == "entity_f1"
    given = load_config(None, ["task=token_classification", "train.learning_rate=3e-5"])
    assert (given.train.learning_rate, given.train.batch_size) == (3e-5, 32)
