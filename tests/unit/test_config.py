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
