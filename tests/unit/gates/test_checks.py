import numpy as np
import pandas as pd
import pytest

from pipeline_lib.config import ConfigError, SliceConfig, load_config
from pipeline_lib.data.keys import text_digests
from pipeline_lib.gates.champion import Champion, comparison_rows
from pipeline_lib.gates.checks import budget_checks, champion_check, floor_checks, parity_checks, slice_checks
from pipeline_lib.registry.promotion import champion_history
from pipeline_lib.task_types.bootstrap import fast_metric, paired_bootstrap
from pipeline_lib.task_types.metrics import classification_metrics, flat_metrics

LABELS = ["negative", "neutral", "positive"]
rng = np.random.default_rng(7)
Y = rng.integers(0, 3, 300)


def noisy(y: np.ndarray, error_rate: float, seed: int) -> np.ndarray:
    """Predictions that are wrong on about `error_rate` of the rows."""
    r = np.random.default_rng(seed)
    wrong = r.random(len(y)) < error_rate
    return np.where(wrong, (y + r.integers(1, 3, len(y))) % 3, y)


def test_floors_pass_and_fail_with_figures():
    checks = floor_checks({"accuracy": 0.8, "macro_f1": 0.5, "f1.negative": 0.3}, {"accuracy": 0.7, "f1.negative": 0.4})
    assert [(c.name, c.passed) for c in checks] == [("floor:accuracy", True), ("floor:f1.negative", False)]
    assert checks[1].value == 0.3 and checks[1].threshold == 0.4


def test_unknown_floor_metric_is_a_config_error():
    with pytest.raises(ValueError, match=r"gates\.floors\.f2.*known: accuracy"):
        floor_checks({"accuracy": 0.8}, {"f2": 0.5})


def test_parity_checks_use_configured_budgets_and_the_task_metric():
    cfg = load_config(None, [f"data.labels={LABELS}"])
    ok = parity_checks(cfg, {"max_abs_logit_diff": 1e-5, "agreement": 1.0, "metric_torch": 0.8, "metric_onnx": 0.8})
    bad = parity_checks(cfg, {"max_abs_logit_diff": 0.5, "agreement": 0.9, "metric_torch": 0.8, "metric_onnx": 0.79})
    assert [c.name for c in ok] == ["onnx:max_abs_logit_diff", "onnx:agreement", "onnx:metric_diff"]
    assert all(c.passed for c in ok)
    assert not any(c.passed for c in bad)


def test_int8_parity_has_its_own_budget():
    cfg = load_config(None, [f"data.labels={LABELS}"])
    summary = {"max_abs_logit_diff": 1e-5, "agreement": 1.0, "metric_torch": 0.80, "metric_onnx": 0.80}
    good = parity_checks(cfg, {**summary, "int8": {"agreement": 0.98, "metric": 0.795}})
    bad = parity_checks(cfg, {**summary, "int8": {"agreement": 0.90, "metric": 0.75}})
    assert {c.name: c.passed for c in good}["int8:metric_drop"] and {c.name: c.passed for c in good}["int8:agreement"]
    assert {c.name: c.passed for c in bad} == {
        "onnx:max_abs_logit_diff": True,
        "onnx:agreement": True,
        "onnx:metric_diff": True,
        "int8:agreement": False,
        "int8:metric_drop": False,
    }


def test_budget_checks_size_and_latency():
    cfg = load_config(
        None, [f"data.labels={LABELS}", "gates.max_model_mb=100", "gates.latency_p50_ms=10", "gates.latency_p95_ms=20"]
    )
    checks = budget_checks(cfg, 87.0, {"p50_ms": 4.0, "p95_ms": 25.0, "n": 50, "threads": 1})
    assert {c.name: c.passed for c in checks} == {
        "budget:size_mb": True,
        "budget:latency_p50_ms": True,
        "budget:latency_p95_ms": False,
    }
    off = load_config(
        None,
        [f"data.labels={LABELS}", "gates.max_model_mb=null", "gates.latency_p50_ms=null", "gates.latency_p95_ms=null"],
    )
    assert budget_checks(off, 1e6, None) == []


def test_fast_metric_matches_scikit_learn():
    pred = noisy(Y, 0.3, 1)
    flat = flat_metrics(classification_metrics(Y, pred, LABELS))
    for name in ("accuracy", "macro_f1", "f1.negative", "precision.neutral", "recall.positive"):
        assert fast_metric(Y, pred, 3, name, LABELS) == pytest.approx(flat[name], abs=1e-12)
    with pytest.raises(ValueError, match=r"f1\.bullish"):
        fast_metric(Y, pred, 3, "f1.bullish", LABELS)


def test_paired_bootstrap_is_seeded_and_brackets_the_delta():
    a, b = noisy(Y, 0.1, 2), noisy(Y, 0.3, 3)
    one = paired_bootstrap(Y, a, b, LABELS, "macro_f1", resamples=500, seed=5)
    two = paired_bootstrap(Y, a, b, LABELS, "macro_f1", resamples=500, seed=5)
    assert one == two
    assert one.ci_low < one.delta < one.ci_high and one.ci_low > 0 and one.p_not_better < 0.01


def test_clearly_better_challenger_passes_and_worse_one_is_refused_with_figures():
    cfg = load_config(None, [f"data.labels={LABELS}", "gates.bootstrap_resamples=500"])
    better, worse = noisy(Y, 0.1, 4), noisy(Y, 0.4, 5)
    passed = champion_check(cfg, Y, better, Champion("1", None, worse))
    refused = champion_check(cfg, Y, worse, Champion("1", None, better))
    assert passed.passed and passed.figures["ci_low"] > 0
    assert not refused.passed and refused.value < 0 and "CI [" in refused.detail and "champion v1" in refused.detail


def test_equal_model_never_replaces_champion():
    cfg = load_config(None, [f"data.labels={LABELS}", "gates.min_improvement=0", "gates.bootstrap_resamples=200"])
    pred = noisy(Y, 0.2, 6)
    tie = champion_check(cfg, Y, pred, Champion("1", None, pred.copy()))
    assert not tie.passed and tie.value == 0


def test_margin_is_required_even_when_not_significantly_worse():
    cfg = load_config(None, [f"data.labels={LABELS}", "gates.min_improvement=0.2", "gates.bootstrap_resamples=200"])
    check = champion_check(cfg, Y, noisy(Y, 0.1, 7), Champion("1", None, noisy(Y, 0.2, 8)))
    assert not check.passed and 0 < check.value < 0.2


def test_significantly_worse_in_ci_refuses_despite_positive_point_delta():
    """One more right answer in 30 rows: a positive delta, but the CI reaches zero, so a zero tolerance refuses."""
    sets = ["gates.min_improvement=0", "gates.regression_tolerance=0", "gates.bootstrap_resamples=500"]
    cfg = load_config(None, [f"data.labels={LABELS}", *sets])
    y = Y[:30]
    champion = noisy(y, 0.3, 9)
    challenger = champion.copy()
    fix = np.flatnonzero(challenger != y)[:1]
    challenger[fix] = y[fix]
    check = champion_check(cfg, y, challenger, Champion("1", None, champion))
    assert check.value > 0 and check.figures["ci_low"] <= 0 and not check.passed


def test_incomparable_champion_refuses():
    cfg = load_config(None, [f"data.labels={LABELS}"])
    check = champion_check(cfg, Y, Y, Champion("4", None, None))
    assert not check.passed and "label set" in check.detail


def test_slice_checks_floor_and_no_regression():
    texts = ["Profit did not rise.", "Sales rose 5% to EUR 3.2 mn from EUR 2.9 mn.", "The AGM is in May.", "No deal."]
    y = np.array([0, 2, 1, 0])
    cfg = load_config(None, [f"data.labels={LABELS}"])
    cfg.gates.slices = [
        SliceConfig(name="negation", keywords=["not", "no"], floor=0.9),
        SliceConfig(name="numbers", pattern=r"(\d\D+){3}", tolerance=0),
        SliceConfig(name="empty", keywords=["zzz"]),
    ]
    challenger = np.array([0, 1, 1, 1])  # one of two negations right, the numbers sentence wrong
    champion = Champion("3", None, np.array([0, 2, 1, 0]))
    checks = {c.name: c for c in slice_checks(cfg, texts, y, challenger, champion)}
    assert set(checks) == {
        "slice:negation:floor",
        "slice:negation:no_regression",
        "slice:numbers:no_regression",
        "slice:empty",
    }
    assert not checks["slice:negation:floor"].passed and checks["slice:negation:floor"].value == 0.5
    assert not checks["slice:numbers:no_regression"].passed and "1 rows" in checks["slice:numbers:no_regression"].detail
    assert checks["slice:empty"].passed
    no_champion = slice_checks(cfg, texts, y, challenger, None)
    assert [c.name for c in no_champion] == ["slice:negation:floor", "slice:empty"]


def test_slice_config_needs_a_valid_definition():
    with pytest.raises(ConfigError, match="give a pattern or keywords"):
        load_config(None, [f"data.labels={LABELS}", 'gates.slices=[{"name": "x"}]'])
    with pytest.raises(ConfigError, match="not a valid regex"):
        load_config(None, [f"data.labels={LABELS}", 'gates.slices=[{"name": "x", "pattern": "("}]'])


def test_champion_history_follows_promotions_and_rollbacks():
    ledger = [
        {"action": "promote", "version": "1"},
        {"action": "refuse", "version": "2"},
        {"action": "promote", "version": "3"},
        {"action": "force-promote", "version": "4"},
        {"action": "rollback", "version": "3"},
    ]
    assert champion_history(ledger) == ["1", "3"]
    assert champion_history(ledger[:1]) == ["1"]


# --- the champion is compared on the test rows it never saw ------------------------------------------------------


def _test_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"sentence number {i}" for i in range(n)], "label": [LABELS[y] for y in Y[:n]]})


def test_champion_is_compared_only_on_test_rows_it_never_saw():
    cfg = load_config(None, [f"data.labels={LABELS}", "gates.bootstrap_resamples=300", "gates.champion_min_rows=30"])
    test = _test_frame(300)
    seen = frozenset(text_digests(test["text"][:100]))  # it trained on the first 100 test rows
    memorised = np.where(np.arange(300) < 100, Y, noisy(Y, 0.4, 11))  # perfect where it trained, poor elsewhere
    challenger = noisy(Y, 0.2, 12)
    champion = Champion("3", None, memorised, seen=seen, split_method="stratified-v1")
    comparison = comparison_rows(test, champion, cfg.gates.champion_min_rows)
    assert (comparison.overlap, comparison.n, comparison.refused) == (100, 200, None)
    fair = champion_check(cfg, Y, challenger, champion, test=test, comparison=comparison)
    rigged = champion_check(cfg, Y, challenger, champion, test=test)  # all rows, memorised ones included
    assert fair.passed and fair.figures["n"] == 200 and fair.figures["overlap"] == 100
    assert "the 200 of 300 test rows the champion never saw (100 left out)" in fair.detail
    assert not rigged.passed  # on every row the memorised rows make the champion look better


def test_too_few_unseen_rows_or_an_unknown_overlap_refuses_the_comparison():
    cfg = load_config(None, [f"data.labels={LABELS}", "gates.champion_min_rows=150"])
    test = _test_frame(300)
    mostly_seen = Champion("3", None, Y[:300], seen=frozenset(text_digests(test["text"][:200])))
    refused = champion_check(cfg, Y, Y, mostly_seen, test=test, comparison=comparison_rows(test, mostly_seen, 150))
    assert (
        not refused.passed and refused.figures["n_compared"] == 100 and "gates.champion_min_rows=150" in refused.detail
    )
    legacy = Champion("2", None, Y[:300], seen=None)
    unknown = champion_check(cfg, Y, Y, legacy, test=test, comparison=comparison_rows(test, legacy, 150))
    assert not unknown.passed and unknown.figures["overlap"] is None and "no record of the rows" in unknown.detail
    nothing_seen = Champion("4", None, Y[:300], seen=frozenset())
    assert comparison_rows(test, nothing_seen, 150).to_dict() == {
        "n_test": 300,
        "overlap": 0,
        "n_compared": 300,
        "refused": None,
    }
