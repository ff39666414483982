import pytest

from pipeline_lib.config import load_config
from pipeline_lib.gates import champion_check, floor_checks, parity_checks


def test_floors_pass_and_fail_with_figures():
    checks = floor_checks({"accuracy": 0.8, "macro_f1": 0.5, "f1.negative": 0.3}, {"accuracy": 0.7, "f1.negative": 0.4})
    assert [(c.name, c.passed) for c in checks] == [("floor:accuracy", True), ("floor:f1.negative", False)]
    assert checks[1].value == 0.3 and checks[1].threshold == 0.4


def test_unknown_floor_metric_is_a_config_error():
    with pytest.raises(ValueError, match=r"gates\.floors\.f2.*known: accuracy"):
        floor_checks({"accuracy": 0.8}, {"f2": 0.5})


def test_parity_checks_use_configured_budgets():
    cfg = load_config(None)
    ok = parity_checks(cfg, {"max_abs_logit_diff": 1e-5, "agreement": 1.0})
    bad = parity_checks(cfg, {"max_abs_logit_diff": 0.5, "agreement": 0.9})
    assert all(c.passed for c in ok)
    assert not any(c.passed for c in bad)


def test_equal_model_never_replaces_champion():
    cfg = load_config(None, ["gates.min_improvement=0"])
    tie = champion_check(cfg, {"macro_f1": 0.8}, {"macro_f1": 0.8}, "1")
    assert not tie.passed and tie.value == 0


def test_margin_is_required():
    cfg = load_config(None, ["gates.min_improvement=0.02"])
    assert not champion_check(cfg, {"macro_f1": 0.81}, {"macro_f1": 0.80}, "1").passed
    assert champion_check(cfg, {"macro_f1": 0.83}, {"macro_f1": 0.80}, "1").passed


def test_incomparable_champion_refuses():
    cfg = load_config(None)
    check = champion_check(cfg, {"macro_f1": 0.9}, None, "4")
    assert not check.passed and "label set" in check.detail
