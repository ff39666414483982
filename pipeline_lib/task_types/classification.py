"""Sequence classification (one label per text: sentiment, topics): the task strategy, and the pieces only it
uses (text encoding, PyTorch logits, ONNX parity on the test split)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import DataConfig, OutputConfig, PipelineConfig
from pipeline_lib.data.readers import read_labelled_text
from pipeline_lib.data.splits import subsample
from pipeline_lib.data.text_rules import check_text_splits, label_coverage, prepare_texts
from pipeline_lib.layout import RunDir
from pipeline_lib.progress import ProgressReporter
from pipeline_lib.task_types.bootstrap import paired_bootstrap
from pipeline_lib.task_types.inference import InferenceSettings, batched_logits, inference_settings, torch_runner
from pipeline_lib.task_types.metrics import classification_metrics, flat_metrics

PARITY_BATCH_SIZE = 32


class SequenceClassification:
    """One label per text (sentiment, topics)."""

    name = "sequence_classification"
    split_columns = ("text", "label", "source", "row")
    headline = ("accuracy", "macro_f1")
    eval_in_order = False  # labels travel with the predictions: any batch order scores the same

    def auto_model(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    # validate
    def read(self, path: Path, data: DataConfig) -> pd.DataFrame:
        return read_labelled_text(path, data)

    def prepare(self, df: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, int, list[Any]]:
        return prepare_texts(df, data)

    def limit_train(self, train: pd.DataFrame, data: DataConfig, seed: int) -> pd.DataFrame:
        return subsample(train, data.max_train_rows, seed) if data.max_train_rows else train

    def check_splits(self, splits: dict[str, pd.DataFrame], data: DataConfig) -> tuple[dict[str, Any], list[Any]]:
        return check_text_splits(splits, data)

    def coverage(self, splits: dict[str, pd.DataFrame], data: DataConfig) -> list[Any]:
        return label_coverage(splits, data)

    def infer_labels(self, train: pd.DataFrame) -> list[str]:
        """The labels of the training split, sorted (their order is the model's label index)."""
        return sorted(str(label) for label in train["label"].dropna().unique())

    def label_counts(self, frame: pd.DataFrame) -> dict[str, int]:
        counts = frame["label"].astype(object).fillna("<missing>").value_counts()
        return {str(label): int(n) for label, n in sorted(counts.items())}

    # tokenize / train
    def encode(self, frame: pd.DataFrame, tokenizer: Any, cfg: PipelineConfig) -> dict[str, list[Any]]:
        return encode_texts(frame, tokenizer, cfg)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, cfg: PipelineConfig, eval_dataset: Any) -> Callable[[Any], dict[str, float]]:
        def compute(eval_pred: Any) -> dict[str, float]:
            logits, label_ids = eval_pred.predictions, eval_pred.label_ids
            metrics = classification_metrics(label_ids, np.argmax(logits, axis=-1), cfg.data.label_names)
            return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}

        return compute

    # evaluate / export / gates
    def evaluate(
        self,
        model_dir: Path,
        frame: pd.DataFrame,
        cfg: PipelineConfig,
        settings: InferenceSettings | None = None,
        predictor: Any = None,
        logits: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Full metrics (with `confusion_matrix`) and the logits saved beside them: `logits` when given (one row per
        text of `frame`, already computed), the served ONNX graph's when `predictor` is given (what the export step
        chose), else PyTorch's at `settings`."""
        texts = list(frame["text"].astype(str))
        if logits is not None:
            if len(logits) != len(texts):
                raise ValueError(f"{len(logits)} rows of logits for {len(texts)} test texts")
        elif predictor is not None:
            logits = predictor.logits(texts)
        else:
            logits = torch_logits(model_dir, texts, cfg.model.max_length, output=cfg.output, settings=settings)
        y_true = label_indices(frame["label"], cfg.data.label_names)
        return classification_metrics(y_true, logits.argmax(axis=-1), cfg.data.label_names), logits

    def check_metric_name(self, name: str, labels: list[str]) -> None:
        check_metric_name(name, labels)

    def parity(
        self, model: Any, predictor: Any, run: Any, labels: list[str], metric_name: str, rows: np.ndarray
    ) -> dict[str, Any]:
        """PyTorch against ONNX on the test split's `rows` (a seeded sample), on identical tokenized batches;
        `onnx_logits` and `torch_logits` (of those rows, in order) are returned for reuse."""
        texts, y_true = read_test_split(run, labels)
        reference, onnx_logits = paired_logits(model, predictor, [texts[i] for i in rows])
        figures = parity_figures(reference, onnx_logits, y_true[rows], labels, metric_name)
        return {**figures, "n": len(rows), "of": len(texts), "onnx_logits": onnx_logits, "torch_logits": reference}

    # gates: y_true / pred hold one label index per text
    def gold(self, test: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return label_indices(test["label"], labels)

    def unit_mask(self, test: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """The entries of y_true / pred that belong to the selected test rows: one per text."""
        return np.asarray(rows, dtype=bool)

    def gate_metrics(
        self, test: pd.DataFrame, y_true: np.ndarray, pred: np.ndarray, labels: list[str]
    ) -> dict[str, float]:
        return flat_metrics(classification_metrics(y_true, pred, labels))

    def paired_bootstrap(
        self, test: Any, y_true: np.ndarray, a: np.ndarray, b: np.ndarray, labels: list[str], metric: str, **kw: Any
    ) -> Any:
        return paired_bootstrap(y_true, a, b, labels, metric, **kw)

    def score_predictor(self, predictor: Any, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
        logits = predictor.logits(list(frame["text"]))
        return flat_metrics(classification_metrics(label_indices(frame["label"], labels), logits.argmax(-1), labels))


def encode_texts(frame: pd.DataFrame, tokenizer: Any, cfg: PipelineConfig) -> dict[str, list[Any]]:
    """Sequence classification: one truncated encoding and one label id per text."""
    label_ids = {label: i for i, label in enumerate(cfg.data.label_names)}
    encoded = tokenizer(list(frame["text"]), truncation=True, max_length=cfg.model.max_length)
    columns = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    columns["labels"] = [label_ids[label] for label in frame["label"]]
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return columns


def torch_logits(
    model_dir: Path,
    texts: list[str],
    max_length: int,
    batch_size: int | None = None,
    output: OutputConfig | None = None,
    settings: InferenceSettings | None = None,
) -> np.ndarray:
    """Logits of the saved PyTorch model (eval mode) for `texts`, in order: length-sorted batches padded only to each
    batch's longest text, at `settings`' precision, device and threads (default: this machine's, fp32 unless it does
    bf16 natively); `batch_size` overrides the settings' (progress shown with `output`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    settings = settings or inference_settings("auto")
    size = batch_size or settings.batch_size
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    if not texts:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    columns = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    reporter = ProgressReporter("evaluating", -(-len(texts) // size), "batches", output) if output else None
    pads = {"input_ids": tokenizer.pad_token_id or 0}
    advance = reporter.advance if reporter is not None else None
    logits = batched_logits(torch_runner(model, settings), columns, size, pads, model.config.num_labels, advance)
    if reporter is not None:
        reporter.close()
    return logits


def label_indices(labels: pd.Series, label_names: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(label_names)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def read_test_split(run: RunDir, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Texts and label indices of the test split."""
    frame = pd.read_parquet(run.split_file("test"), columns=["text", "label"])
    if frame.empty:
        raise ValueError(f"{run.split_file('test')} is empty: nothing to check the ONNX export on")
    unknown = sorted(set(frame["label"]) - set(labels))
    if unknown:
        raise ValueError(f"test split has labels {unknown} that the model does not know ({labels})")
    index = {label: i for i, label in enumerate(labels)}
    return frame["text"].astype(str).tolist(), frame["label"].map(index).to_numpy(dtype=np.int64)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def paired_logits(model: Any, predictor: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch and ONNX Runtime logits on identical tokenized batches: length-sorted, each padded to its longest text,
    rows back in input order. Every ONNX batch runs before the first PyTorch one: interleaved, onnxruntime's
    spin-waiting threads and PyTorch's contend for the same cores (several times slower on 2 cores)."""
    import torch

    if not texts:
        return np.zeros((0, len(predictor.labels)), np.float32), np.zeros((0, len(predictor.labels)), np.float32)
    lengths = [len(ids) for ids in predictor.encode_unpadded(texts)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches = [predictor.encode([texts[i] for i in group]) for group in _batches(list(order), PARITY_BATCH_SIZE)]
    onnx_out = [predictor.run(features) for features in batches]
    with torch.inference_mode():
        torch_out = [
            model(**{name: torch.from_numpy(array) for name, array in features.items()}).logits.float().numpy()
            for features in batches
        ]
    restore = np.argsort(order, kind="stable")
    return np.concatenate(torch_out)[restore], np.concatenate(onnx_out)[restore]


def check_metric_name(name: str, labels: list[str]) -> None:
    """Fail fast when `gates.compare_metric` is not something `classification_metrics` reports."""
    one = np.zeros(1, dtype=np.int64)
    task_metric(one, np.zeros((1, len(labels))), labels, name)


def task_metric(y_true: np.ndarray, logits: np.ndarray, labels: list[str], name: str) -> float:
    """One metric of `classification_metrics` (or a per-class one such as `f1.negative`)."""
    flat = flat_metrics(classification_metrics(y_true, logits.argmax(axis=-1), labels))
    if name not in flat:
        raise ValueError(f"gates.compare_metric={name!r} is not a metric; choose from {sorted(flat)}")
    return flat[name]


def measure_parity(
    model: Any, predictor: Any, texts: list[str], y_true: np.ndarray, metric_name: str
) -> tuple[dict[str, float], np.ndarray]:
    """Parity figures of PyTorch and ONNX run on identical batches (one label per text), and ONNX's logits."""
    torch_logits, onnx_logits = paired_logits(model, predictor, texts)
    return parity_figures(torch_logits, onnx_logits, y_true, predictor.labels, metric_name), onnx_logits


def parity_figures(
    torch_logits: np.ndarray, onnx_logits: np.ndarray, y_true: np.ndarray, labels: list[str], metric_name: str
) -> dict[str, float]:
    """Max |logit diff|, argmax agreement and the task metric for PyTorch and ONNX."""
    return {
        "max_abs_logit_diff": float(np.abs(torch_logits - onnx_logits).max()),
        "agreement": float((torch_logits.argmax(-1) == onnx_logits.argmax(-1)).mean()),
        "metric_torch": task_metric(y_true, torch_logits, labels, metric_name),
        "metric_onnx": task_metric(y_true, onnx_logits, labels, metric_name),
    }
