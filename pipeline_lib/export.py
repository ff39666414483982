"""Export the fine-tuned model to ONNX and check the ONNX graph against PyTorch on the test split.

The ONNX folder (`run.onnx_dir`) holds `model.onnx` (one file, no external data), the tokenizer files
and `tunepipe.json`; it is built in a temporary folder and renamed into place, so it only ever
appears complete. torch and transformers are imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.inference import INT8_FILE, META_FILE, ONNX_FILE, OUTPUT_NAME, STATIC_INT8_FILE, OnnxPredictor
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.metrics import classification_metrics, flat_metrics
from pipeline_lib.quantization import quantize_dynamic_int8, quantize_static_int8
from pipeline_lib.task_types import task_for

PARITY_BATCH_SIZE = 32
PARITY_TASKS = ("sequence_classification", "token_classification")  # see pipeline_lib.task_types
CANONICAL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # order of the ONNX graph inputs
_TMP_PREFIX = ".onnx.tmp-"
_OLD_PREFIX = ".onnx.old-"
_EXAMPLE_TEXTS = ("an example input for the exporter", "a short one")  # batch 2, seq >= 3: dims stay dynamic


@dataclass
class ExportResult:
    """What the export step produced and how closely ONNX matches PyTorch on the test split."""

    onnx_path: str
    size_mb: float
    max_abs_logit_diff: float
    agreement: float
    metric_torch: float
    metric_onnx: float
    metric_name: str
    n: int
    seconds: float
    optimizer: dict[str, int] | None = None  # fused operators counted by onnxruntime's transformer optimizer
    int8: dict[str, float] | None = None  # parity and size of the dynamically quantized graph, when written
    runtime: dict[str, Any] | None = None  # the serving runtime chosen by measurement, with its timing table

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(cfg: PipelineConfig, run: RunDir) -> ExportResult:
    """Export `run.model_dir` to `run.onnx_dir`, measure parity on the test split, write the summary.

    Parity is measured on the staged folder before it is published, and the old summary is removed just
    before the swap, so a summary on disk always describes the ONNX folder next to it.
    """
    start = time.perf_counter()
    task = task_for(cfg.task)  # test split, parity metric and predictions differ per task
    model, tokenizer = load_trained(run.model_dir, cfg.task)
    labels = model_labels(model, cfg.data.labels)
    metric_name = cfg.gates.compare_metric
    task.check_metric_name(metric_name, labels)
    meta = {
        "task": cfg.task,
        "labels": labels,
        "max_length": cfg.model.max_length,
        "input_names": graph_input_names(tokenizer),
        "opset": cfg.export.opset,
        "stride": cfg.model.stride,
        "exporter": cfg.export.exporter,
    }
    with staging_dir(run.root) as staged:
        write_onnx_folder(model, tokenizer, meta, staged)
        fused = optimize_graph(staged / ONNX_FILE, model.config) if cfg.export.optimize else None
        parity = task.parity(model, OnnxPredictor.from_dir(staged), run, labels, metric_name)
        int8 = None
        if cfg.export.quantize_int8:
            quantize_dynamic_int8(staged / ONNX_FILE, staged / INT8_FILE)
            int8 = int8_summary(
                task.parity(model, OnnxPredictor.from_dir(staged, graph=INT8_FILE), run, labels, metric_name),
                staged / INT8_FILE,
            )
        runtime = choose_runtime(cfg, staged, run, model, tokenizer, parity) if cfg.export.select_runtime else None
        run.export_summary.unlink(missing_ok=True)
        publish_dir(staged, run.onnx_dir)
    onnx_path = run.onnx_dir / ONNX_FILE
    result = ExportResult(
        onnx_path=str(onnx_path),
        size_mb=round(onnx_path.stat().st_size / 2**20, 3),
        metric_name=metric_name,
        seconds=round(time.perf_counter() - start, 3),
        optimizer=fused,
        int8=int8,
        runtime=runtime,
        **parity,
    )
    write_json(run.export_summary, result.to_dict())
    return result


# --- loading -----------------------------------------------------------------------------------------


def _auto_model_class(task: str) -> Any:
    """The transformers auto class for `task` (the one place a new task type plugs in)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    classes = {
        "sequence_classification": AutoModelForSequenceClassification,
        "token_classification": AutoModelForTokenClassification,
    }
    if task not in classes:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(classes)}")
    return classes[task]


def load_trained(model_dir: Path, task: str) -> tuple[Any, Any]:
    """The fine-tuned model (float32, safetensors only, no remote code, eval mode) and its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: run the train step first")
    model = _auto_model_class(task).from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    return model.eval(), tokenizer


def model_labels(model: Any, expected: list[str]) -> list[str]:
    """The model's labels in index order, checked against the configured `data.labels`."""
    id2label = model.config.id2label
    labels = [id2label[i] for i in range(len(id2label))]
    if labels != list(expected):
        raise ValueError(f"model labels {labels} differ from data.labels {list(expected)} in the config")
    return labels


def graph_input_names(tokenizer: Any) -> list[str]:
    """The ONNX graph inputs: the canonical inputs this tokenizer produces (no token_type_ids for MPNet…)."""
    produced = set(tokenizer.model_input_names)
    missing = {"input_ids", "attention_mask"} - produced
    if missing:
        raise ValueError(f"tokenizer does not produce {sorted(missing)}; cannot export")
    return [name for name in CANONICAL_INPUTS if name in produced]


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


# --- ONNX folder ---------------------------------------------------------------------------------------


@contextmanager
def staging_dir(root: Path) -> Iterator[Path]:
    """A fresh temp folder inside `root` (stale ones from killed exports are removed), deleted on error."""
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(root)
    staged = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def write_onnx_folder(model: Any, tokenizer: Any, meta: dict[str, Any], folder: Path) -> Path:
    """model.onnx, the tokenizer files and tunepipe.json in `folder`."""
    export_onnx(model, tokenizer, meta, folder / ONNX_FILE)
    tokenizer.save_pretrained(folder)
    write_json(folder / META_FILE, meta)
    return folder


def export_onnx(model: Any, tokenizer: Any, meta: dict[str, Any], path: Path) -> Path:
    """Export the model's logits to one ONNX file with dynamic batch and sequence dimensions."""
    import onnx
    import torch

    names = meta["input_names"]
    example = tokenizer(list(_EXAMPLE_TEXTS), padding="longest", return_tensors="pt")
    args = tuple(example[name] for name in names)
    if meta.get("exporter") == "torchscript":
        return export_torchscript(model, names, args, meta, path)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings():  # every input shares the two dims; torch notes each repeat
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        torch.onnx.export(
            logits_module(model, names),
            args,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),  # one entry: the *inputs tuple
            opset_version=meta["opset"],
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    onnx.checker.check_model(str(path))
    return path


def export_torchscript(model: Any, names: list[str], args: tuple[Any, ...], meta: dict[str, Any], path: Path) -> Path:
    """The TorchScript exporter on eager attention: the graph pattern onnxruntime's optimizer fuses into
    `Attention` (the dynamo graph of SDPA is not fused). Parity is measured on the result as for dynamo."""
    import onnx
    import torch

    model.set_attn_implementation("eager")
    output_axes = {0: "batch", 1: "sequence"} if meta["task"] == "token_classification" else {0: "batch"}
    with warnings.catch_warnings():  # tracer notes on the mask branch (never taken: masks match the inputs)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            logits_module(model, names),
            args,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, OUTPUT_NAME: output_axes},
            opset_version=meta["opset"],
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def logits_module(model: Any, input_names: list[str]) -> Any:
    """Wrap `model` in a module whose positional inputs are `input_names` and whose output is the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(input_names, inputs, strict=True))).logits

    return LogitsOnly().eval()


def optimize_graph(path: Path, config: Any) -> dict[str, int]:
    """Rewrite `path` with onnxruntime's BERT optimizer (fused LayerNorm/GELU, and attention where the
    exported pattern allows); returns the non-zero fused-operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    optimized.save_model_to_file(str(path))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def choose_runtime(
    cfg: PipelineConfig, staged: Path, run: RunDir, model: Any, tokenizer: Any, parity: dict[str, Any]
) -> dict[str, Any] | None:
    """Build the int8 candidates (dynamic, and static QDQ calibrated on training sentences), then time and judge
    every graph (classification only). Quantized graphs that are neither served nor asked for are deleted."""
    if cfg.task != "sequence_classification":
        return None
    from pipeline_lib import runtimes

    labels = model_labels(model, cfg.data.labels)
    texts, y_true = read_test_split(run, labels)
    fp32 = OnnxPredictor.from_dir(staged, graph=ONNX_FILE, cpu_only=True)
    fp32_labels = fp32.logits(texts).argmax(-1)
    candidates = {"onnxruntime-fp32": (ONNX_FILE, parity["metric_onnx"], parity["agreement"])}
    if not (staged / INT8_FILE).is_file():
        quantize_dynamic_int8(staged / ONNX_FILE, staged / INT8_FILE)
    calibration = calibration_batches(run, fp32, cfg.export.calibration_sentences, cfg.train.seed)
    if calibration:
        quantize_static_int8(staged / ONNX_FILE, staged / STATIC_INT8_FILE, calibration)
    for name, graph in (("onnxruntime-int8-dynamic", INT8_FILE), ("onnxruntime-int8-static", STATIC_INT8_FILE)):
        if (staged / graph).is_file():
            logits = OnnxPredictor.from_dir(staged, graph=graph, cpu_only=True).logits(texts)
            agreement = float((logits.argmax(-1) == fp32_labels).mean())
            candidates[name] = (graph, task_metric(y_true, logits, labels, cfg.gates.compare_metric), agreement)
    table = runtimes.select(cfg, staged, candidates, texts, parity["metric_torch"], model, tokenizer)
    keep = {ONNX_FILE, table["graph"], *([INT8_FILE] if cfg.export.quantize_int8 else [])}
    for graph, *_ in candidates.values():
        if graph not in keep:
            (staged / graph).unlink()
    return table


def calibration_batches(run: RunDir, predictor: OnnxPredictor, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Up to `n` training sentences (a seeded sample), encoded for the graph in batches of 32; empty when the run
    has no train split on disk."""
    path = run.split_file("train")
    if n == 0 or not path.is_file():
        return []
    texts = pd.read_parquet(path, columns=["text"])["text"].astype(str)
    sample = texts.sample(min(n, len(texts)), random_state=seed).tolist()
    return [predictor.encode(batch) for batch in _batches(sample, PARITY_BATCH_SIZE)]


def int8_summary(parity: dict[str, Any], path: Path) -> dict[str, float]:
    """The int8 graph against PyTorch: agreement, task metric, max logit difference, size."""
    return {
        "agreement": parity["agreement"],
        "metric": parity["metric_onnx"],
        "max_abs_logit_diff": parity["max_abs_logit_diff"],
        "size_mb": round(path.stat().st_size / 2**20, 3),
    }


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; an existing `final` is moved aside first and deleted afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f"{_OLD_PREFIX}{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temp_dirs(root: Path) -> None:
    """Delete folders left by an export that was killed before it could publish or clean up."""
    for stale in [*root.glob(f"{_TMP_PREFIX}*"), *root.glob(f"{_OLD_PREFIX}*")]:
        shutil.rmtree(stale, ignore_errors=True)


# --- parity --------------------------------------------------------------------------------------------


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def paired_logits(model: Any, predictor: OnnxPredictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch and ONNX Runtime logits on identical tokenized batches."""
    import torch

    torch_out, onnx_out = [], []
    with torch.inference_mode():
        for batch in _batches(texts, PARITY_BATCH_SIZE):
            features = predictor.encode(batch)
            onnx_out.append(predictor.run(features))
            tensors = {name: torch.from_numpy(array) for name, array in features.items()}
            torch_out.append(model(**tensors).logits.float().numpy())
    return np.concatenate(torch_out), np.concatenate(onnx_out)


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
    model: Any, predictor: OnnxPredictor, texts: list[str], y_true: np.ndarray, metric_name: str
) -> dict[str, float]:
    """Max |logit diff|, argmax agreement and the task metric for PyTorch and ONNX (one label per text)."""
    torch_logits, onnx_logits = paired_logits(model, predictor, texts)
    labels = predictor.labels
    return {
        "max_abs_logit_diff": float(np.abs(torch_logits - onnx_logits).max()),
        "agreement": float((torch_logits.argmax(-1) == onnx_logits.argmax(-1)).mean()),
        "metric_torch": task_metric(y_true, torch_logits, labels, metric_name),
        "metric_onnx": task_metric(y_true, onnx_logits, labels, metric_name),
    }
