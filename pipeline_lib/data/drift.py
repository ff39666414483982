"""How a training split differs from the one the champion learned: a text-light profile of each (label counts,
lengths in tokens, vocabulary, `[UNK]` rate; for NER the entity-type mix and entity lengths), and the comparison of
two profiles with scipy.stats (chi-square for mixes, two-sample Kolmogorov-Smirnov for lengths).

A feature drifts when its figure passes its threshold in `gates.drift` and, for the tests, the shift is also
significant (p < `gates.drift.p_value`); each feature's action is `warn` or `block`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import DriftConfig

WORD = re.compile(r"\w+", re.UNICODE)
SAMPLE = 5000  # lengths kept per profile (a seeded sample of larger splits): what the KS test compares
VOCABULARY = 50_000  # most frequent words kept per profile


def _sample(values: list[int], seed: int = 0) -> list[int]:
    if len(values) <= SAMPLE:
        return [int(v) for v in values]
    return [int(v) for v in np.random.default_rng(seed).choice(np.asarray(values), SAMPLE, replace=False)]


def _sample_texts(texts: list[str], seed: int = 0) -> list[str]:
    if len(texts) <= SAMPLE:
        return texts
    return [texts[i] for i in np.sort(np.random.default_rng(seed).choice(len(texts), SAMPLE, replace=False))]


def profile(train: pd.DataFrame, tokenizer: Any, task: str) -> dict[str, Any]:
    """The profile of a training split. `tokenizer` is a `tokenizers.Tokenizer` (the model's fast tokenizer core).
    Lengths in tokens and the `[UNK]` rate come from a seeded sample of `SAMPLE` texts of a larger split (the size
    the KS test compares anyway; a fifth of the tokenizing on 25k rows), the vocabulary from every text."""
    texts = train["text"].astype(str).tolist()
    measured = _sample_texts(texts)
    encodings = tokenizer.encode_batch(measured) if measured else []
    unk = tokenizer.token_to_id("[UNK]")
    tokens = sum(len(e.ids) for e in encodings)
    unknown = sum(e.ids.count(unk) for e in encodings) if unk is not None else 0
    words = Counter(word for text in texts for word in WORD.findall(text.casefold()))
    found: dict[str, Any] = {
        "task": task,
        "rows": len(train),
        "token_lengths": [len(e.ids) for e in encodings],
        "unk_rate": unknown / tokens if tokens else 0.0,
        "words": int(sum(words.values())),
        "vocabulary": dict(words.most_common(VOCABULARY)),
    }
    if task == "token_classification":
        spans = [_spans(list(tags)) for tags in train["tags"]]
        found["entity_types"] = dict(Counter(kind for sentence in spans for kind, _ in sentence))
        found["entity_lengths"] = _sample([length for sentence in spans for _, length in sentence])
    else:
        found["labels"] = {str(k): int(v) for k, v in train["label"].value_counts().items()}
    return found


def _spans(tags: list[str]) -> list[tuple[str, int]]:
    """(type, length in words) of each entity of an IOB2 sequence."""
    spans, kind, length = [], None, 0
    for tag in [*tags, "O"]:
        if tag.startswith("I-") and kind == tag[2:]:
            length += 1
            continue
        if kind is not None:
            spans.append((kind, length))
        kind, length = (tag[2:], 1) if tag[:2] in ("B-", "I-") else (None, 0)
    return spans


@dataclass
class Feature:
    """One compared feature: its figure against the threshold, the test behind it, and what to do."""

    name: str
    figure: float
    threshold: float
    test: str
    statistic: float
    p_value: float | None
    action: str
    drifted: bool
    detail: str
    champion: dict[str, Any]  # what the plots show: the champion's side
    new: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mix(name: str, old: dict[str, int], new: dict[str, int], rule: Any, p_floor: float, what: str) -> Feature:
    """A mix (labels, entity types): the largest change of one share, with a chi-square test of the new counts
    against the old shares (categories the old split lacked count with a tiny expected share)."""
    from scipy.stats import chisquare

    keys = sorted(set(old) | set(new))
    old_n, new_n = max(sum(old.values()), 1), max(sum(new.values()), 1)
    old_share = np.array([old.get(k, 0) / old_n for k in keys])
    new_share = np.array([new.get(k, 0) / new_n for k in keys])
    expected = np.maximum(old_share, 1e-6)
    expected = expected / expected.sum() * new_n
    result = chisquare(np.array([new.get(k, 0) for k in keys]), f_exp=expected)
    shifts = sorted(zip(keys, new_share - old_share, strict=True), key=lambda kv: -abs(kv[1]))
    figure = float(abs(shifts[0][1])) if shifts else 0.0
    drifted = figure > rule.max and float(result.pvalue) < p_floor
    top = ", ".join(f"{k} {old.get(k, 0) / old_n:.1%} → {new.get(k, 0) / new_n:.1%}" for k, _ in shifts[:3])
    detail = f"largest {what} shift {figure:.1%} (chi-square p={float(result.pvalue):.2g}): {top}"
    return Feature(
        name,
        figure,
        rule.max,
        "chi-square",
        float(result.statistic),
        float(result.pvalue),
        rule.action,
        drifted,
        detail,
        {"shares": dict(zip(keys, old_share.round(4).tolist(), strict=True))},
        {"shares": dict(zip(keys, new_share.round(4).tolist(), strict=True))},
    )


def _lengths(name: str, old: list[int], new: list[int], rule: Any, p_floor: float, unit: str) -> Feature:
    from scipy.stats import ks_2samp

    result = ks_2samp(old, new) if old and new else None
    statistic = float(result.statistic) if result else 0.0
    p_value = float(result.pvalue) if result else None
    quantiles = (
        {q: (float(np.percentile(old, q)), float(np.percentile(new, q))) for q in (50, 90, 99)} if result else {}
    )
    drifted = statistic > rule.max and p_value is not None and p_value < p_floor
    shown = ", ".join(f"p{q} {a:.0f} → {b:.0f}" for q, (a, b) in quantiles.items())
    detail = f"KS statistic {statistic:.3f} (p={p_value if p_value is not None else float('nan'):.2g}); {unit}: {shown}"
    return Feature(
        name,
        statistic,
        rule.max,
        "two-sample KS",
        statistic,
        p_value,
        rule.action,
        drifted,
        detail,
        {"values": old},
        {"values": new},
    )


def compare(old: dict[str, Any], new: dict[str, Any], settings: DriftConfig) -> list[Feature]:
    """Every configured feature of `new` against `old` (the champion's training split)."""
    p = settings.p_value
    features = []
    if "labels" in old and "labels" in new:
        features.append(_mix("label_mix", old["labels"], new["labels"], settings.label_mix, p, "label"))
    features.append(
        _lengths("length_tokens", old["token_lengths"], new["token_lengths"], settings.length_tokens, p, "tokens")
    )
    vocabulary = old["vocabulary"]
    unseen = sum(count for word, count in new["vocabulary"].items() if word not in vocabulary)
    share = unseen / new["words"] if new["words"] else 0.0
    rule = settings.unseen_words
    features.append(
        Feature(
            "unseen_words",
            share,
            rule.max,
            "share",
            share,
            None,
            rule.action,
            share > rule.max,
            f"{share:.1%} of the word occurrences are words the champion's training split never had; [UNK] rate "
            f"{old['unk_rate']:.2%} → {new['unk_rate']:.2%}",
            {"unk_rate": old["unk_rate"]},
            {"unk_rate": new["unk_rate"]},
        )
    )
    rise = new["unk_rate"] - old["unk_rate"]
    rule = settings.unk_rate
    features.append(
        Feature(
            "unk_rate",
            rise,
            rule.max,
            "difference",
            rise,
            None,
            rule.action,
            rise > rule.max,
            f"[UNK] tokens {old['unk_rate']:.2%} → {new['unk_rate']:.2%} of all tokens",
            {"unk_rate": old["unk_rate"]},
            {"unk_rate": new["unk_rate"]},
        )
    )
    if "entity_types" in old and "entity_types" in new:
        features.append(
            _mix("entity_mix", old["entity_types"], new["entity_types"], settings.entity_mix, p, "entity-type")
        )
        features.append(
            _lengths("entity_length", old["entity_lengths"], new["entity_lengths"], settings.entity_length, p, "words")
        )
    return features
