"""NER building blocks: word-id label alignment, windows over long sentences, span decoding, seqeval."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities

from pipeline_lib.task_types.entities import decode_entities, entity_metrics, entity_spans, split_words
from pipeline_lib.task_types.windows import IGNORE, align_labels, encode_sentences, plan_windows, word_logits
from pipeline_lib.training.modeling import load_tokenizer, resolve_model_source

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model_source("default"))


def test_align_labels_first_subtoken_carries_the_label():
    word_ids = [None, 0, 1, 1, 1, 2, None]  # word 1 has three sub-tokens
    assert align_labels(word_ids, [3, 0, 1], range(0, 3)) == [IGNORE, 3, 0, IGNORE, IGNORE, 1, IGNORE]
    assert align_labels(word_ids, [3, 0, 1], range(1, 2)) == [IGNORE, IGNORE, 0, IGNORE, IGNORE, IGNORE, IGNORE]


def test_alignment_with_the_real_fast_tokenizer(tokenizer):
    words = ["EU", "rejects", "Germanization", "."]
    columns = encode_sentences(tokenizer, [words], max_length=32, stride=4, tag_ids=[[3, 0, 7, 0]])
    ids, labels = columns["input_ids"][0], columns["labels"][0]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    labelled = [(piece, label) for piece, label in zip(pieces, labels, strict=True) if label != IGNORE]
    assert labelled == [("eu", 3), ("rejects", 0), ("german", 7), (".", 0)]
    assert sum(piece.startswith("##") for piece in pieces) >= 1  # "Germanization" really was split
    assert [i for i in columns["word_index"][0] if i >= 0] == [0, 1, 2, 3]


def test_word_index_marks_each_scored_words_first_subtoken(tokenizer):
    columns = encode_sentences(tokenizer, [["Germanization", "EU"]], max_length=32, stride=4)
    index = columns["word_index"][0]
    assert index[0] == -1 and index[1] == 0 and index[-2] == 1 and index[-1] == -1
    assert all(i == -1 for i in index[2:-2])  # the continuation sub-tokens


@pytest.mark.parametrize("seed", range(20))
def test_windows_score_every_word_exactly_once(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([0, 1, 1, 1, 2, 3, 7]) for _ in range(rng.randint(1, 80))]
    budget, stride = rng.choice([(8, 2), (10, 4), (16, 0), (30, 8)])
    windows = plan_windows(lengths, budget, stride)
    scored = [i for w in windows for i in range(w.score_start, w.score_end)]
    assert scored == list(range(len(lengths)))
    for w in windows:
        assert w.start <= w.score_start < w.score_end <= w.end
        assert sum(min(n, budget) for n in lengths[w.start : w.end]) <= budget or w.end - w.start == 1


def test_long_sentence_is_windowed_not_truncated(tokenizer):
    words = [f"Name{i}" for i in range(60)]  # 2+ sub-tokens each: far beyond a 24-token window
    tags = [[1 if i % 5 == 0 else 0 for i in range(60)]]
    columns = encode_sentences(tokenizer, [words], max_length=24, stride=8, tag_ids=tags)
    assert len(columns["input_ids"]) > 5 and max(columns["length"]) <= 24
    assert set(columns["sentence"]) == {0}
    scored = sorted(i for row in columns["word_index"] for i in row if i >= 0)
    assert scored == list(range(60))  # every word scored once
    labelled = [lab for row in columns["labels"] for lab in row if lab != IGNORE]
    assert labelled.count(1) == 12 and len(labelled) == 60
    # gathering per-word logits back: a fake model that "predicts" each window's labels
    logits = []
    for row in columns["labels"]:
        window = np.zeros((len(row), 2), dtype=np.float32)
        for pos, lab in enumerate(row):
            window[pos, max(lab, 0)] = 1.0
        logits.append(window)
    per_word = word_logits(logits, columns["word_index"], columns["sentence"], [60], outside=0)
    assert per_word[0].argmax(-1).tolist() == tags[0]


def test_word_without_subtokens_is_predicted_outside(tokenizer):
    columns = encode_sentences(tokenizer, [["EU", "\u200b", "lamb"]], max_length=16, stride=2)
    logits = [np.ones((len(columns["input_ids"][0]), 3), dtype=np.float32) * [0, 5, 0]]
    per_word = word_logits(logits, columns["word_index"], columns["sentence"], [3], outside=0)
    assert per_word[0].argmax(-1).tolist() == [1, 0, 1]


@pytest.mark.parametrize("seed", range(30))
def test_span_decoding_agrees_with_seqeval(seed):
    rng = random.Random(seed)
    tags = [rng.choice(TAGS) for _ in range(rng.randint(0, 25))]
    assert [(k, s, e - 1) for k, s, e in entity_spans(tags)] == get_entities(tags)


def test_seqeval_metrics_on_hand_made_cases():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-MISC", "O"]]
    m = entity_metrics(true, pred)
    # gold: PER, LOC, ORG, MISC (4); predicted: PER, ORG(wrong place), ORG, MISC(short) (4); correct: PER, ORG
    assert m["entity_precision"] == pytest.approx(0.5) and m["entity_recall"] == pytest.approx(0.5)
    assert m["entity_f1"] == pytest.approx(0.5)
    assert m["per_class"]["PER"]["f1"] == 1.0 and m["per_class"]["LOC"]["recall"] == 0.0
    assert m["per_class"]["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["token_accuracy"] == pytest.approx(6 / 8)  # includes O: high even when entities are wrong
    assert m["entities"] == 4 and m["n"] == 2 and m["n_tokens"] == 8
    all_o = entity_metrics(true, [["O"] * 4, ["O"] * 4])
    assert all_o["entity_f1"] == 0.0 and all_o["token_accuracy"] == pytest.approx(2 / 8)
    # an I- that follows O is an entity start (conlleval's reading)
    assert entity_metrics([["O", "B-PER"]], [["O", "I-PER"]])["entity_f1"] == 1.0


def test_split_words_and_entity_offsets():
    text = "EU rejects German call to boycott British lamb."
    words = split_words(text)
    assert [w for w, _, _ in words][-2:] == ["lamb", "."]
    assert all(text[s:e] == w for w, s, e in words)
    tags = ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    logits = np.full((len(words), len(TAGS)), -5.0)
    for i, tag in enumerate(tags):
        logits[i, TAGS.index(tag)] = 5.0
    entities = decode_entities(text, words, logits, TAGS)
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in entities] == [
        ("ORG", 0, 2, "EU"),
        ("MISC", 11, 17, "German"),
        ("MISC", 34, 41, "British"),
    ]
    assert all(0.99 < e["score"] <= 1.0 for e in entities)


@pytest.mark.parametrize("seed", range(10))
def test_counts_for_the_bootstrap_agree_with_seqeval(seed):
    from pipeline_lib.data.conll import entity_types
    from pipeline_lib.task_types.entities import metric_from_counts, sentence_counts
    from pipeline_lib.task_types.metrics import flat_metrics

    rng = random.Random(seed)
    gold = [[rng.choice(TAGS[:7]) for _ in range(rng.randint(1, 12))] for _ in range(15)]
    pred = [[tag if rng.random() < 0.7 else rng.choice(TAGS) for tag in sentence] for sentence in gold]
    expected = flat_metrics(entity_metrics(gold, pred))
    types = entity_types(TAGS)
    counts, tokens = sentence_counts(gold, pred, types)
    for name in (
        "entity_f1",
        "entity_precision",
        "entity_recall",
        "macro_f1",
        "token_accuracy",
        "f1.PER",
        "recall.LOC",
    ):
        got = metric_from_counts(counts.sum(axis=0), tokens.sum(axis=0), name, types)
        assert got == pytest.approx(expected.get(name, 0.0)), name


def test_token_task_scores_gates_per_word_and_bootstraps_whole_sentences():
    import pandas as pd

    from pipeline_lib.task_types import task_for
    from pipeline_lib.task_types.metrics import flat_metrics

    task = task_for("token_classification")
    rng = random.Random(0)
    tags = [[rng.choice(TAGS[:7]) for _ in range(rng.randint(1, 9))] for _ in range(40)]
    test = pd.DataFrame({"tags": tags})
    y_true = task.gold(test, TAGS)
    assert len(y_true) == sum(map(len, tags))
    worse = np.array([i if rng.random() < 0.6 else 0 for i in y_true])
    starts = np.cumsum([0, *map(len, tags)])
    pred_tags = [[TAGS[i] for i in worse[a:b]] for a, b in itertools.pairwise(starts)]
    assert task.gate_metrics(test, y_true, worse, TAGS) == flat_metrics(entity_metrics(tags, pred_tags))
    boot = task.paired_bootstrap(test, y_true, y_true, worse, TAGS, "entity_f1", resamples=200, seed=1)
    assert boot.challenger == 1.0 and boot.delta > 0 and 0 < boot.ci_low <= boot.delta <= boot.ci_high
    assert boot.n == 40 and boot.p_not_better == 0.0
    same = task.paired_bootstrap(test, y_true, worse, worse, TAGS, "f1.PER", resamples=100)
    assert same.delta == 0 and same.ci_low == same.ci_high == 0
    with pytest.raises(ValueError, match="one prediction per word"):
        task.gate_metrics(test, y_true, worse[:-1], TAGS)


def test_training_evaluates_windows_in_dataset_order(tmp_path):
    """transformers groups eval batches by length under group_by_length; NER metrics need dataset order."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from pipeline_lib.task_types import task_for
    from pipeline_lib.training.trainer import evaluate_in_order

    lengths = [3, 9, 1, 7, 2, 8, 5, 4, 6, 2]
    data = Dataset.from_dict({"input_ids": [[i] * n for i, n in enumerate(lengths)], "length": lengths})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        train_sampling_strategy="group_by_length",
        per_device_eval_batch_size=2,
        report_to="none",
        remove_unused_columns=False,
        use_cpu=True,
    )
    trainer = Trainer(model=torch.nn.Linear(1, 1), args=args, data_collator=lambda rows: rows)

    def order(t):
        return [row["input_ids"][0] for batch in t.get_eval_dataloader(data) for row in batch]

    assert order(trainer) != list(range(10))  # what would scramble the sentences
    assert task_for("token_classification").eval_in_order
    assert order(evaluate_in_order(trainer)) == list(range(10))
