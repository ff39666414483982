"""Entities of IOB2 tag sequences: decoding spans, seqeval metrics (and their per-sentence counts for fast
bootstraps), and entity predictions with character offsets for raw text.

Only numpy is imported at module level: the served model (`runtime.predictor`) uses this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline_lib.task_types.windows import run_windows

_WORD = re.compile(r"\S+")


_LEADING = "([{\"'`"


_TRAILING = ")]}\"',;:!?"


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) per entity, decoded as conlleval / seqeval's default mode do:
    an entity starts at `B-X`, or at an `I-X` that does not continue an `X`; it goes on over `I-X`."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, Any]:
    """seqeval entity-level precision/recall/F1 (micro, macro and per type) and token accuracy (secondary)."""
    from seqeval.metrics import accuracy_score, classification_report

    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags, strict=True)):
        raise ValueError("true and predicted tags must have the same sentences and lengths")
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    micro, macro = report.pop("micro avg"), report.pop("macro avg")
    report.pop("weighted avg", None)
    return {
        "entity_precision": float(micro["precision"]),
        "entity_recall": float(micro["recall"]),
        "entity_f1": float(micro["f1-score"]),
        "macro_f1": float(macro["f1-score"]),
        "token_accuracy": float(accuracy_score(true_tags, pred_tags)) if true_tags else 0.0,
        "per_class": {
            kind: {
                "precision": float(row["precision"]),
                "recall": float(row["recall"]),
                "f1": float(row["f1-score"]),
                "support": int(row["support"]),
            }
            for kind, row in sorted(report.items())
        },
        "entities": int(micro["support"]),
        "n": len(true_tags),
        "n_tokens": sum(len(t) for t in true_tags),
    }


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text with character offsets, close to CoNLL tokenization: whitespace-separated, with
    leading brackets/quotes and trailing punctuation split off (a final `.` only when the word has no other
    `.`, so `U.S.` stays whole)."""
    words = []
    for match in _WORD.finditer(text):
        start, end = match.span()
        while end - start > 1 and text[start] in _LEADING:
            words.append((text[start], start, start + 1))
            start += 1
        tail = []
        while end - start > 1 and (
            text[end - 1] in _TRAILING or (text[end - 1] == "." and "." not in text[start : end - 1])
        ):
            tail.append((text[end - 1], end - 1, end))
            end -= 1
        words.append((text[start:end], start, end))
        words.extend(reversed(tail))
    return words


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def decode_entities(
    text: str, words: Sequence[tuple[str, int, int]], per_word: np.ndarray, labels: Sequence[str]
) -> list[dict[str, Any]]:
    """Entities with type, character offsets, surface text and score (the mean probability of the
    predicted tag over the entity's words)."""
    probabilities = softmax(np.asarray(per_word, dtype=np.float64)) if len(words) else np.zeros((0, len(labels)))
    best = probabilities.argmax(axis=-1) if len(words) else np.zeros(0, dtype=int)
    tags = [labels[i] for i in best]
    entities = []
    for kind, first, last in entity_spans(tags):
        start, end = words[first][1], words[last - 1][2]
        score = float(probabilities[np.arange(first, last), best[first:last]].mean())
        entities.append({"type": kind, "start": start, "end": end, "text": text[start:end], "score": round(score, 6)})
    return entities


def predict_entities(predictor: Any, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
    """`{"text", "entities": [{"type", "start", "end", "text", "score"}]}` per text, with an ONNX predictor
    (`inference.OnnxPredictor`) of a token-classification model."""
    labels = list(predictor.labels)
    sentences = [split_words(text) for text in texts]
    words = [[w for w, _, _ in sentence] for sentence in sentences]
    stride = int(predictor.meta.get("stride", 32))
    outside = labels.index("O") if "O" in labels else 0
    per_word = run_windows(
        predictor.run,
        predictor.tokenizer,
        predictor.input_names,
        predictor.max_length,
        words,
        stride,
        batch_size,
        outside,
    )
    return [
        {"text": text, "entities": decode_entities(text, sentence, rows, labels)}
        for text, sentence, rows in zip(texts, sentences, per_word, strict=True)
    ]


def sentence_counts(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], types: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence and entity type: (correct, predicted, gold) entity counts, shape (sentences, types, 3); and
    per sentence (correct, total) tokens. Sums of these give every entity metric (for fast bootstraps)."""
    index = {kind: i for i, kind in enumerate(types)}
    counts = np.zeros((len(true_tags), len(types), 3), dtype=np.int64)
    tokens = np.zeros((len(true_tags), 2), dtype=np.int64)
    for s, (gold, pred) in enumerate(zip(true_tags, pred_tags, strict=True)):
        gold_spans, pred_spans = set(entity_spans(gold)), set(entity_spans(pred))
        for column, spans in ((0, gold_spans & pred_spans), (1, pred_spans), (2, gold_spans)):
            for kind, _, _ in spans:
                if kind in index:
                    counts[s, index[kind], column] += 1
        tokens[s] = (sum(g == p for g, p in zip(gold, pred, strict=True)), len(gold))
    return counts, tokens


def metric_from_counts(counts: np.ndarray, tokens: np.ndarray, name: str, types: Sequence[str]) -> float:
    """One entity metric (`entity_f1`, `entity_precision`, `entity_recall`, `macro_f1`, `token_accuracy`,
    or `f1.X` / `precision.X` / `recall.X`) from summed `sentence_counts` (the figures `entity_metrics` gives)."""
    if name == "token_accuracy":
        return float(tokens[1] and tokens[0] / tokens[1])

    def prf(tp: float, predicted: float, gold: float) -> tuple[float, float, float]:
        p = tp / predicted if predicted else 0.0
        r = tp / gold if gold else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    if name.startswith("entity_"):
        p, r, f = prf(*counts.sum(axis=0))
        return {"entity_precision": p, "entity_recall": r, "entity_f1": f}.get(name, float("nan"))
    if name == "macro_f1":
        present = [prf(*row)[2] for row in counts if row[1] or row[2]]
        return float(np.mean(present)) if present else 0.0
    kind, _, label = name.partition(".")
    if kind in ("precision", "recall", "f1") and label in types:
        return prf(*counts[list(types).index(label)])[("precision", "recall", "f1").index(kind)]
    raise ValueError(
        f"metric {name!r}: expected entity_f1|entity_precision|entity_recall|macro_f1|token_accuracy "
        f"or precision|recall|f1.<type> of {list(types)}"
    )
