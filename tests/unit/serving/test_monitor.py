"""The comparison `tunepipe monitor` makes, on synthetic predictions: none of the features drifts on a sample of
the same distribution; a skewed label mix, longer texts and lower confidence each drift, and only the features
that changed; a small difference that is significant, or a large one on too little data, does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.config import MonitorConfig
from pipeline_lib.serving.monitor import compare

LABELS = ["negative", "neutral", "positive"]
SETTINGS = MonitorConfig()


def sample(n: int, seed: int, mix=(0.3, 0.4, 0.3), chars=(60, 140), confidence=(8, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "label": rng.choice(LABELS, size=n, p=list(mix)),
            "chars": rng.integers(*chars, size=n),
            "confidence": 0.34 + 0.66 * rng.beta(*confidence, size=n),
        }
    )


def drifting(live: pd.DataFrame, reference: pd.DataFrame | None = None) -> dict[str, bool]:
    return {
        c.feature: c.drift
        for c in compare(reference if reference is not None else sample(400, 0), live, LABELS, SETTINGS)
    }


def test_same_distribution_does_not_drift():
    assert drifting(sample(300, 1)) == dict.fromkeys(["label_mix", "confidence", "length", "low_confidence"], False)


@pytest.mark.parametrize(
    ("live", "feature"),
    [
        (sample(300, 2, mix=(0.8, 0.1, 0.1)), "label_mix"),
        (sample(300, 3, chars=(200, 400)), "length"),
    ],
)
def test_one_changed_feature_drifts_alone(live: pd.DataFrame, feature: str):
    flags = drifting(live)
    assert flags.pop(feature) is True
    assert not any(flags.values()), flags


def test_lower_confidence_drifts_confidence_and_low_confidence_share():
    flags = drifting(sample(300, 4, confidence=(1, 4)))
    assert flags == {"label_mix": False, "confidence": True, "length": False, "low_confidence": True}


def test_label_mix_detail_names_the_largest_shift():
    check = compare(sample(400, 0), sample(300, 2, mix=(0.8, 0.1, 0.1)), LABELS, SETTINGS)[0]
    assert check.test == "chi-square" and check.p_value < 1e-6 and check.effect > 0.4
    assert check.detail.startswith("largest shift negative 26% -> 81% (live: negative 81%")


def test_significant_but_small_or_large_but_unsupported_differences_do_not_drift():
    small = drifting(sample(20000, 5, mix=(0.36, 0.34, 0.30)), reference=sample(20000, 6))
    assert small["label_mix"] is False, "significant at this size, but below max_label_shift"
    few = drifting(sample(6, 7, mix=(0.6, 0.2, 0.2)), reference=sample(8, 8))
    assert few["label_mix"] is False, "a big shift on a handful of predictions is not significant"


def test_a_label_missing_on_both_sides_is_left_out_of_the_test():
    reference, live = sample(200, 9, mix=(0.5, 0.5, 0.0)), sample(200, 10, mix=(0.5, 0.5, 0.0))
    assert drifting(live, reference)["label_mix"] is False
    one_label = sample(100, 11, mix=(1.0, 0.0, 0.0))
    assert drifting(one_label, one_label)["label_mix"] is False
