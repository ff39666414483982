"""Drift between two training splits: profiles and their comparison (scipy.stats behind the figures)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.config import DriftConfig
from pipeline_lib.data.drift import compare, profile
from pipeline_lib.training.modeling import resolve_model_source, tokenizer_core


@pytest.fixture(scope="module")
def core():
    return tokenizer_core(resolve_model_source("default"))


def frame(texts: list[str], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": labels})


BASE = [f"Net sales rose {i} % in the quarter" for i in range(300)]


def test_same_data_does_not_drift_and_a_shifted_one_does(core):
    old = profile(frame(BASE, ["positive", "negative", "neutral"] * 100), core, "sequence_classification")
    same = profile(frame(BASE, ["positive", "negative", "neutral"] * 100), core, "sequence_classification")
    assert not any(f.drifted for f in compare(old, same, DriftConfig()))

    longer = [f"{t}, while the outlook for the rest of the year remains uncertain for zorbular widgets" for t in BASE]
    skewed = profile(frame(longer, ["positive"] * 250 + ["negative"] * 50), core, "sequence_classification")
    found = {f.name: f for f in compare(old, skewed, DriftConfig())}
    assert found["label_mix"].drifted and found["label_mix"].figure == pytest.approx(0.5, abs=1e-6)
    assert "positive 33.3% → 83.3%" in found["label_mix"].detail and found["label_mix"].p_value < 1e-6
    assert found["length_tokens"].drifted and found["length_tokens"].figure == pytest.approx(1.0)
    assert found["unseen_words"].figure > 0 and "zorbular" in skewed["vocabulary"]
    assert {f.action for f in found.values()} == {"warn"}


def test_thresholds_and_actions_come_from_the_config(core):
    old = profile(frame(BASE, ["a", "b"] * 150), core, "sequence_classification")
    new = profile(frame(BASE, ["a"] * 200 + ["b"] * 100), core, "sequence_classification")
    lenient = DriftConfig.model_validate({"label_mix": {"max": 0.5, "action": "block"}})
    strict = DriftConfig.model_validate({"label_mix": {"max": 0.1, "action": "block"}})
    assert not next(f for f in compare(old, new, lenient) if f.name == "label_mix").drifted
    blocked = next(f for f in compare(old, new, strict) if f.name == "label_mix")
    assert blocked.drifted and blocked.action == "block" and blocked.threshold == 0.1


def test_ner_profiles_compare_entity_types_and_lengths(core):
    sentences = pd.DataFrame(
        {
            "text": ["Peter Blackburn went to Paris"] * 100,
            "tags": [["B-PER", "I-PER", "O", "O", "B-LOC"]] * 100,
        }
    )
    other = sentences.assign(tags=[["B-ORG", "I-ORG", "I-ORG", "O", "O"]] * 100)
    old, new = profile(sentences, core, "token_classification"), profile(other, core, "token_classification")
    assert old["entity_types"] == {"PER": 100, "LOC": 100} and sorted(set(old["entity_lengths"])) == [1, 2]
    found = {f.name: f for f in compare(old, new, DriftConfig())}
    assert found["entity_mix"].drifted and found["entity_length"].drifted and "label_mix" not in found


def test_a_large_split_is_measured_on_a_seeded_sample_of_its_texts(core):
    """Token lengths and the [UNK] rate of a split over `SAMPLE` rows come from a seeded sample of its texts (what
    the KS test compares anyway); the vocabulary and the row count from all of them."""
    from pipeline_lib.data import drift

    calls: list[int] = []

    class Counting:
        def encode_batch(self, texts):
            calls.append(len(texts))
            return core.encode_batch(texts)

        def token_to_id(self, token):
            return core.token_to_id(token)

    rows = drift.SAMPLE * 2 + 7
    texts = [f"Net sales rose {i} % {'zorbular ' * (i % 5)}in quarter {i % 4}" for i in range(rows)]
    big = frame(texts, ["positive", "negative"] * (rows // 2) + ["neutral"])
    first, again = (profile(big, Counting(), "sequence_classification") for _ in range(2))
    assert calls == [drift.SAMPLE, drift.SAMPLE] and first == again  # seeded: the same sample every time
    assert first["rows"] == rows and len(first["token_lengths"]) == drift.SAMPLE
    assert first["vocabulary"]["net"] == rows and str(rows - 1) in first["vocabulary"]  # every text's words
    full = [len(e.ids) for e in core.encode_batch(texts)]
    assert abs(sum(first["token_lengths"]) / drift.SAMPLE - sum(full) / rows) < 0.1  # an unbiased sample
