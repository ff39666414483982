"""Words to sub-tokens and back for token classification: label alignment, windows for long sentences, and
per-word logits from any runner (PyTorch or ONNX Runtime).

Alignment: the first sub-token of a word carries the word's tag, the other sub-tokens are ignored (-100).
Windows: a sentence longer than the model's window is cut at word boundaries into windows that share up to
`stride` sub-tokens of context; every word is *scored* in exactly one window (its label and prediction come
from there), so nothing is silently truncated and every gold entity is scored.
Only numpy is imported at module level: the served model (`runtime.predictor`) uses this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE = -100  # label id ignored by the loss and the metrics


@dataclass(frozen=True)
class Window:
    """Words [start, end) go into the window; words [score_start, score_end) are scored in it."""

    start: int
    end: int
    score_start: int
    score_end: int


def plan_windows(word_lengths: Sequence[int], budget: int, stride: int) -> list[Window]:
    """Cut a sentence (sub-tokens per word) into windows of at most `budget` sub-tokens.

    A sentence that fits is one window. Otherwise the words are split into consecutive scored chunks of at
    most `budget - stride` sub-tokens (at least one word each), and each chunk is widened with up to `stride // 2`
    sub-tokens of context on the left and then with context on the right until the window is full.
    A single word longer than the budget gets a window of its own (its tail is truncated; its first
    sub-token, which carries its label, is kept).
    """
    if budget < 1:
        raise ValueError(f"window budget must be >= 1 sub-token, got {budget}")
    n = len(word_lengths)
    lengths = [min(int(length), budget) for length in word_lengths]
    if sum(lengths) <= budget:
        return [Window(0, n, 0, n)]
    stride = min(stride, budget // 2)
    chunk = max(1, budget - stride)
    windows = []
    a = 0
    while a < n:
        b, used = a + 1, lengths[a]
        while b < n and used + lengths[b] <= chunk:
            used += lengths[b]
            b += 1
        start, left = a, 0
        while start > 0 and left + lengths[start - 1] <= stride // 2 and used + left + lengths[start - 1] <= budget:
            start -= 1
            left += lengths[start]
        end, total = b, used + left
        while end < n and total + lengths[end] <= budget:
            total += lengths[end]
            end += 1
        windows.append(Window(start, end, a, b))
        a = b
    return windows


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], scored: range) -> list[int]:
    """Label ids per sub-token: a scored word's first sub-token gets its label, everything else -100.

    `word_ids` index into `word_labels` (None for special tokens), as a fast tokenizer's `word_ids()`.
    """
    labels, previous = [], None
    for word in word_ids:
        first = word is not None and word != previous and word in scored
        labels.append(int(word_labels[word]) if first else IGNORE)
        previous = word
    return labels


def first_subtokens(word_ids: Sequence[int | None], scored: range) -> list[int]:
    """Per sub-token: the word index for a scored word's first sub-token, else -1."""
    out, previous = [], None
    for word in word_ids:
        out.append(word if word is not None and word != previous and word in scored else -1)
        previous = word
    return out


def encode_sentences(
    tokenizer: Any,
    sentences: Sequence[Sequence[str]],
    max_length: int,
    stride: int,
    tag_ids: Sequence[Sequence[int]] | None = None,
) -> dict[str, list[Any]]:
    """Windows of every sentence as model inputs, with `sentence` (index), `word_index` (per sub-token:
    the scored word's index at its first sub-token, else -1), `length`, and `labels` when `tag_ids` is given."""
    sentences = [list(words) for words in sentences]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    counts = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False) if sentences else None
    pieces, owners, plans = [], [], []
    for i, words in enumerate(sentences):
        lengths = [0] * len(words)
        for word in counts.word_ids(i):
            if word is not None:
                lengths[word] += 1
        for window in plan_windows(lengths, budget, stride):
            pieces.append(words[window.start : window.end])
            owners.append(i)
            plans.append(window)
    encoded = tokenizer(pieces, is_split_into_words=True, truncation=True, max_length=max_length) if pieces else {}
    columns: dict[str, list[Any]] = {
        name: list(encoded[name]) for name in tokenizer.model_input_names if name in encoded
    }
    columns.setdefault("input_ids", [])
    columns["sentence"], columns["word_index"], columns["length"] = owners, [], []
    if tag_ids is not None:
        columns["labels"] = []
    for k, (owner, window) in enumerate(zip(owners, plans, strict=True)):
        word_ids = [None if w is None else w + window.start for w in encoded.word_ids(k)]
        scored = range(window.score_start, window.score_end)
        columns["word_index"].append(first_subtokens(word_ids, scored))
        columns["length"].append(len(word_ids))
        if tag_ids is not None:
            columns["labels"].append(align_labels(word_ids, tag_ids[owner], scored))
    return columns


def word_logits(
    logits: Sequence[np.ndarray],
    word_index: Sequence[Sequence[int]],
    sentence: Sequence[int],
    n_words: Sequence[int],
    outside: int,
) -> list[np.ndarray]:
    """Per sentence, one logit row per word, gathered from the window that scores it.

    `logits[k]` is window k's (sequence, labels) array (padding beyond `word_index[k]` is ignored). A word
    without any sub-token (e.g. a lone zero-width character) is predicted `outside` (the `O` tag's index).
    """
    n_labels = int(np.asarray(logits[0]).shape[-1]) if len(logits) else 1
    fill = np.full(n_labels, -1e4, dtype=np.float32)
    fill[outside] = 0.0
    out = [np.tile(fill, (count, 1)) for count in n_words]
    for window_logits, positions, owner in zip(logits, word_index, sentence, strict=True):
        positions = np.asarray(positions)
        keep = np.nonzero(positions >= 0)[0]
        out[owner][positions[keep]] = np.asarray(window_logits)[keep]
    return out


def tags_from_logits(per_word: Sequence[np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    return [[labels[i] for i in np.asarray(rows).argmax(axis=-1)] if len(rows) else [] for rows in per_word]


def pretokenized_logits(predictor: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Per-word logits of already tokenized texts (words separated by whitespace, as a validated split's
    `text` column), every text's words concatenated in order: one row per word."""
    return sentence_logits(predictor, [text.split() for text in texts], batch_size)


def sentence_logits(predictor: Any, sentences: list[list[str]], batch_size: int = 32) -> np.ndarray:
    """Per-word logits of `sentences` (lists of words) through an ONNX token classifier (`OnnxPredictor`), windowed
    at its own max_length and stride, every sentence's words concatenated in order: one row per word."""
    labels = list(predictor.labels)
    stride = int(predictor.meta.get("stride", 32))
    outside = labels.index("O") if "O" in labels else 0
    per_word = run_windows(
        predictor.run,
        predictor.tokenizer,
        predictor.input_names,
        predictor.max_length,
        sentences,
        stride,
        batch_size,
        outside,
    )
    rows = [r for r in per_word if len(r)]
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, len(labels)), dtype=np.float32)


def run_windows(
    run_batch: Any,
    tokenizer: Any,
    input_names: Sequence[str],
    max_length: int,
    sentences: list[list[str]],
    stride: int,
    batch_size: int,
    outside: int,
) -> list[np.ndarray]:
    """Per-word logits of `sentences` (lists of words): windowed like training, batched by length,
    `run_batch(features) -> (batch, sequence, labels) logits` (ONNX Runtime or PyTorch)."""
    columns = encode_sentences(tokenizer, sentences, max_length, stride)
    order = sorted(range(len(columns["input_ids"])), key=lambda k: columns["length"][k])
    logits: list[Any] = [None] * len(order)
    pads = {"input_ids": tokenizer.pad_token_id or 0}
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        batch = run_batch(pad_batch({name: [columns[name][k] for k in chunk] for name in input_names}, pads))
        for j, k in enumerate(chunk):
            logits[k] = np.asarray(batch[j, : columns["length"][k]])
    return word_logits(logits, columns["word_index"], columns["sentence"], [len(s) for s in sentences], outside)


def pad_batch(columns: dict[str, list[list[int]]], pad_ids: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Right-pad each column to the batch's longest row (with `pad_ids[name]`, else 0)."""
    width = max(len(row) for rows in columns.values() for row in rows)
    pads = pad_ids or {}
    return {
        name: np.array([list(row) + [pads.get(name, 0)] * (width - len(row)) for row in rows], dtype=np.int64)
        for name, rows in columns.items()
    }
