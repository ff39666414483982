"""Token classification (named entities, one IOB2 tag per word): the task strategy, scored with seqeval at
entity level on whole sentences (long ones are windowed, never truncated: see `windows`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import DataConfig, PipelineConfig
from pipeline_lib.data.conll import entity_types, read_tagged
from pipeline_lib.data.tag_rules import check_tagged_splits, tag_coverage
from pipeline_lib.task_types.bootstrap import resample_delta
from pipeline_lib.task_types.entities import entity_metrics, metric_from_counts, sentence_counts
from pipeline_lib.task_types.inference import InferenceSettings, inference_settings, torch_runner
from pipeline_lib.task_types.metrics import flat_metrics
from pipeline_lib.task_types.windows import IGNORE, encode_sentences, run_windows, tags_from_logits, word_logits

EVAL_BATCH_SIZE = 64


class TokenClassification:
    """One IOB2 tag per word (named entities); scored with seqeval at entity level."""

    name = "token_classification"
    split_columns = ("tokens", "tags", "text", "source", "row")
    headline = ("entity_f1", "token_accuracy")
    eval_in_order = True  # compute_metrics re-assembles windows into sentences by dataset position

    def auto_model(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    # validate
    def read(self, path: Path, data: DataConfig) -> pd.DataFrame:
        return read_tagged(path, data)

    def prepare(self, df: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, int, list[Any]]:
        return df, 0, []

    def limit_train(self, train: pd.DataFrame, data: DataConfig, seed: int) -> pd.DataFrame:
        limit = min(n for n in (data.max_train_sentences, data.max_train_rows, len(train)) if n is not None)
        return train if limit >= len(train) else train.sample(n=limit, random_state=seed).sort_index()

    def check_splits(self, splits: dict[str, pd.DataFrame], data: DataConfig) -> tuple[dict[str, Any], list[Any]]:
        return check_tagged_splits(splits, data)

    def coverage(self, splits: dict[str, pd.DataFrame], data: DataConfig) -> list[Any]:
        return tag_coverage(splits, data)

    def infer_labels(self, train: pd.DataFrame) -> list[str]:
        """`O`, then `B-X`, `I-X` for each entity type X of the training split (sorted): the IOB2 tag set."""
        types = sorted({tag[2:] for tags in train["tags"] for tag in tags if tag[:2] in ("B-", "I-") and tag[2:]})
        return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I"))]

    def label_counts(self, frame: pd.DataFrame) -> dict[str, int]:
        """Entities per type (B- tags), plus the sentence and token totals."""
        tags = [tag for row in frame["tags"] for tag in row]
        counts = pd.Series([t[2:] for t in tags if t.startswith("B-")], dtype=object).value_counts()
        return {
            **{str(kind): int(n) for kind, n in sorted(counts.items())},
            "<sentences>": len(frame),
            "<tokens>": len(tags),
        }

    # tokenize / train
    def encode(self, frame: pd.DataFrame, tokenizer: Any, cfg: PipelineConfig) -> dict[str, list[Any]]:
        index = {tag: i for i, tag in enumerate(cfg.data.label_names)}
        sentences = [list(tokens) for tokens in frame["tokens"]]
        tag_ids = [[index[tag] for tag in tags] for tags in frame["tags"]]
        columns = encode_sentences(tokenizer, sentences, cfg.model.max_length, cfg.model.stride, tag_ids)
        columns["n_words"] = [len(sentences[i]) for i in columns["sentence"]]
        return columns

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def compute_metrics(self, cfg: PipelineConfig, eval_dataset: Any) -> Callable[[Any], dict[str, float]]:
        """Entity metrics per sentence (windows re-assembled; in-training words without sub-tokens count as O)."""
        labels = cfg.data.label_names
        sentence, word_index = eval_dataset["sentence"], eval_dataset["word_index"]
        n_words = _words_per_sentence(sentence, eval_dataset["n_words"])
        outside = _outside(labels)

        def compute(eval_pred: Any) -> dict[str, float]:
            logits, label_ids = eval_pred.predictions, eval_pred.label_ids
            gold_logits = [
                np.eye(len(labels), dtype=np.float32)[np.where(row == IGNORE, outside, row)] for row in label_ids
            ]
            pred = tags_from_logits(word_logits(list(logits), word_index, sentence, n_words, outside), labels)
            gold = tags_from_logits(word_logits(gold_logits, word_index, sentence, n_words, outside), labels)
            m = entity_metrics(gold, pred)
            return {k: m[k] for k in ("entity_f1", "entity_precision", "entity_recall", "macro_f1", "token_accuracy")}

        return compute

    # evaluate / export / gates
    def evaluate(
        self, model_dir: Path, frame: pd.DataFrame, cfg: PipelineConfig, settings: InferenceSettings | None = None
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Entity metrics on whole sentences, a token-level confusion matrix, and the per-word logits (PyTorch at
        `settings`: the run's precision where the hardware has it, every core; windows run length-sorted)."""
        from transformers import AutoTokenizer

        settings = settings or inference_settings("auto")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = self.auto_model().from_pretrained(model_dir, use_safetensors=True)
        per_word = self.word_logits(
            torch_runner(model, settings),
            tokenizer,
            frame,
            cfg.data.label_names,
            cfg.model.max_length,
            cfg.model.stride,
        )
        return self._metrics(frame, per_word, cfg.data.label_names, confusion=True), _stack(
            per_word, len(cfg.data.label_names)
        )

    def check_metric_name(self, name: str, labels: list[str]) -> None:
        """Fail fast when `gates.compare_metric` is not an entity metric (scored here on gold = prediction)."""
        known = _flat(entity_metrics([list(labels)], [list(labels)]))
        if name not in known:
            raise ValueError(f"gates.compare_metric={name!r} is not a metric; choose from {sorted(known)}")

    def parity(
        self, model: Any, predictor: Any, run: Any, labels: list[str], metric_name: str, rows: np.ndarray
    ) -> dict[str, Any]:
        """PyTorch vs ONNX on the words of the test split's sentences `rows` (a seeded sample): max |logit diff|,
        tag agreement, entity metric."""
        import torch

        test = _read_test(run)
        frame = test.iloc[rows].reset_index(drop=True)
        stride = int(predictor.meta.get("stride", 32))
        runs = {
            "torch": _torch_runner(model, torch),
            "onnx": predictor.run,
        }
        per_word = {
            key: self.word_logits(fn, predictor.tokenizer, frame, labels, predictor.max_length, stride, predictor)
            for key, fn in runs.items()
        }
        flat = {key: _flat(self._metrics(frame, rows, labels)) for key, rows in per_word.items()}
        if metric_name not in flat["torch"]:
            raise ValueError(
                f"gates.compare_metric={metric_name!r} is not a metric; choose from {sorted(flat['torch'])}"
            )
        a, b = _stack(per_word["torch"], len(labels)), _stack(per_word["onnx"], len(labels))
        return {
            "max_abs_logit_diff": float(np.abs(a - b).max()) if a.size else 0.0,
            "agreement": float((a.argmax(-1) == b.argmax(-1)).mean()) if a.size else 1.0,
            "metric_torch": flat["torch"][metric_name],
            "metric_onnx": flat["onnx"][metric_name],
            "n": len(frame),
            "of": len(test),
        }

    def score_predictor(self, predictor: Any, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
        stride = int(predictor.meta.get("stride", 32))
        per_word = self.word_logits(
            predictor.run, predictor.tokenizer, frame, labels, predictor.max_length, stride, predictor
        )
        return _flat(self._metrics(frame, per_word, labels))

    # gates: y_true / pred hold one tag index per word, the test split's sentences concatenated
    def gold(self, test: pd.DataFrame, labels: list[str]) -> np.ndarray:
        index = {tag: i for i, tag in enumerate(labels)}
        return np.array([index[tag] for tags in test["tags"] for tag in tags], dtype=np.int64)

    def unit_mask(self, test: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """The entries of y_true / pred that belong to the selected sentences: each of their words."""
        return np.repeat(np.asarray(rows, dtype=bool), [len(tags) for tags in test["tags"]])

    def gate_metrics(
        self, test: pd.DataFrame, y_true: np.ndarray, pred: np.ndarray, labels: list[str]
    ) -> dict[str, float]:
        gold, predicted = self._sentences(test, y_true, pred, labels)
        return _flat(_entity_metrics(gold, predicted))

    def paired_bootstrap(
        self,
        test: pd.DataFrame,
        y_true: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        labels: list[str],
        metric: str,
        resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> Any:
        """challenger − champion on an entity metric, resampling whole sentences (entities never straddle them)."""
        types = entity_types(labels)
        gold, pred_a = self._sentences(test, y_true, a, labels)
        _, pred_b = self._sentences(test, y_true, b, labels)
        (ca, ta), (cb, tb) = sentence_counts(gold, pred_a, types), sentence_counts(gold, pred_b, types)

        def score(counts: np.ndarray, tokens: np.ndarray, idx: Any) -> float:
            return metric_from_counts(counts[idx].sum(axis=0), tokens[idx].sum(axis=0), metric, types)

        return resample_delta(
            len(gold),
            lambda idx: score(ca, ta, idx),
            lambda idx: score(cb, tb, idx),
            metric,
            resamples,
            confidence,
            seed,
        )

    # helpers
    def _sentences(
        self, test: pd.DataFrame, y_true: np.ndarray, pred: np.ndarray, labels: list[str]
    ) -> tuple[list[list[str]], list[list[str]]]:
        """Per-word label indices back into per-sentence tag lists."""
        lengths = [len(tags) for tags in test["tags"]]
        if len(pred) != sum(lengths) or len(y_true) != sum(lengths):
            raise ValueError(f"expected one prediction per word of the test split ({sum(lengths)}), got {len(pred)}")
        bounds = np.cumsum([0, *lengths])
        gold = [[labels[i] for i in y_true[s:e]] for s, e in itertools.pairwise(bounds)]
        predicted = [[labels[i] for i in pred[s:e]] for s, e in itertools.pairwise(bounds)]
        return gold, predicted

    def word_logits(
        self,
        run_batch: Callable[[dict[str, np.ndarray]], np.ndarray],
        tokenizer: Any,
        frame: pd.DataFrame,
        labels: list[str],
        max_length: int,
        stride: int,
        predictor: Any = None,
    ) -> list[np.ndarray]:
        names = list(predictor.input_names) if predictor is not None else list(tokenizer.model_input_names)
        sentences = [list(tokens) for tokens in frame["tokens"]]
        return run_windows(
            run_batch, tokenizer, names, max_length, sentences, stride, EVAL_BATCH_SIZE, _outside(labels)
        )

    def _metrics(
        self, frame: pd.DataFrame, per_word: list[np.ndarray], labels: list[str], confusion: bool = False
    ) -> dict[str, Any]:

        gold = [list(tags) for tags in frame["tags"]]
        pred = tags_from_logits(per_word, labels)
        metrics = entity_metrics(gold, pred)
        if confusion:
            from sklearn.metrics import confusion_matrix

            index = {tag: i for i, tag in enumerate(labels)}
            flat_gold = [index[t] for row in gold for t in row]
            flat_pred = [index[t] for row in pred for t in row]
            ids = list(range(len(labels)))
            metrics["confusion_matrix"] = confusion_matrix(flat_gold, flat_pred, labels=ids).tolist()
        return metrics


def _entity_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    return entity_metrics(gold, pred)


def _outside(labels: list[str]) -> int:
    return labels.index("O") if "O" in labels else 0


def _words_per_sentence(sentence: list[int], n_words: list[int]) -> list[int]:
    counts: dict[int, int] = {}
    for owner, n in zip(sentence, n_words, strict=True):
        counts[owner] = n
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


def _stack(per_word: list[np.ndarray], n_labels: int) -> np.ndarray:
    rows = [np.asarray(r, dtype=np.float32) for r in per_word if len(r)]
    return np.concatenate(rows) if rows else np.zeros((0, n_labels), dtype=np.float32)


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    return flat_metrics(metrics)


def _read_test(run: Any) -> pd.DataFrame:
    frame = pd.read_parquet(run.split_file("test"))
    if frame.empty:
        raise ValueError(f"{run.split_file('test')} is empty: nothing to check the ONNX export on")
    return frame


def _torch_runner(model: Any, torch: Any) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    def run(features: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {name: torch.from_numpy(array) for name, array in features.items()}
            return model(**tensors).logits.float().numpy()

    return run
