"""Step 4, export: the fine-tuned model as an ONNX folder (`runtime.onnx_export`), checked against PyTorch on a seeded
sample of the test split (the task's parity: the same rows through both), with int8 candidates and the serving
runtime chosen by measurement (`runtime.selection`). The evaluate step then scores the whole split through the graph
chosen here."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.versions import file_md5
from pipeline_lib.hardware import machine_signature
from pipeline_lib.layout import RunDir, cache_staging_dir, publish_cache_entry, read_json, write_json
from pipeline_lib.runtime import selection
from pipeline_lib.runtime.onnx_export import (
    graph_input_names,
    load_trained,
    model_labels,
    optimize_graph,
    publish_dir,
    staging_dir,
    write_onnx_folder,
)
from pipeline_lib.runtime.predictor import INT8_FILE, META_FILE, ONNX_FILE, STATIC_INT8_FILE, OnnxPredictor
from pipeline_lib.runtime.quantization import quantize_dynamic_int8, quantize_static_int8
from pipeline_lib.runtime.scored_rows import ScoredRows
from pipeline_lib.task_types import task_for
from pipeline_lib.task_types.classification import read_test_split, task_metric

CALIBRATION_BATCH_SIZE = 32
RUNTIME_CACHE_VERSION = "3"  # bump when the candidates or their timing change meaning


@dataclass
class ExportResult:
    """What the export step produced and how closely ONNX matches PyTorch on the parity sample of the test split."""

    onnx_path: str
    size_mb: float
    max_abs_logit_diff: float
    agreement: float
    metric_torch: float
    metric_onnx: float
    metric_name: str
    n: int  # test rows in the parity sample (`export.parity_rows`, seeded by train.seed)
    seconds: float
    of: int = 0  # test rows in the split
    optimizer: dict[str, int] | None = None  # fused operators counted by onnxruntime's transformer optimizer
    int8: dict[str, float] | None = None  # parity and size of the dynamically quantized graph, when written
    runtime: dict[str, Any] | None = None  # the serving runtime chosen by measurement, with its timing table

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(cfg: PipelineConfig, run: RunDir) -> ExportResult:
    """Export `run.model_dir` to `run.onnx_dir`, measure parity on the test split's sample, write the summary.

    Parity is measured on the staged folder before it is published, and the old summary is removed just
    before the swap, so a summary on disk always describes the ONNX folder next to it.
    """
    start = time.perf_counter()
    task = task_for(cfg.task)  # test split, parity metric and predictions differ per task
    model, tokenizer = load_trained(run.model_dir, cfg.task)
    labels = model_labels(model, cfg.data.label_names)
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
    rows = selection.candidate_sample(test_rows(run), cfg.export.parity_rows, cfg.train.seed)
    with staging_dir(run.root) as staged:
        write_onnx_folder(model, tokenizer, meta, staged)
        fused = optimize_graph(staged / ONNX_FILE, model.config) if cfg.export.optimize else None
        parity = task.parity(model, OnnxPredictor.from_dir(staged), run, labels, metric_name, rows)
        fp32_logits = parity.pop("onnx_logits", None)  # reused to judge the int8 candidates
        torch_logits = parity.pop("torch_logits", None)
        int8 = int8_rows = None
        if cfg.export.quantize_int8:
            quantize_dynamic_int8(staged / ONNX_FILE, staged / INT8_FILE)
            int8_predictor = OnnxPredictor.from_dir(staged, graph=INT8_FILE)
            int8_parity = task.parity(model, int8_predictor, run, labels, metric_name, rows)
            int8_rows = int8_parity.pop("onnx_logits", None)
            int8_parity.pop("torch_logits", None)
            int8 = int8_summary(int8_parity, staged / INT8_FILE)
        runtime, served = None, None
        if cfg.export.select_runtime and cfg.task == "sequence_classification":
            scored = Scored(rows, fp32_logits, torch_logits, int8_rows)
            runtime, served = choose_runtime(cfg, staged, run, model, tokenizer, scored)
        run.export_summary.unlink(missing_ok=True)
        run.export_scored.unlink(missing_ok=True)
        publish_dir(staged, run.onnx_dir)
    if served is not None:  # the served graph's logits on the rows scored here: evaluate scores only the rest
        served.save(run.export_scored, run.onnx_dir / runtime["graph"], run.split_file("test"))
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


@dataclass
class Scored:
    """What the parity already scored on its sample of test rows: the fp32 graph's and PyTorch's logits (and the
    dynamic int8 graph's, with `export.quantize_int8`), reused by the runtime choice instead of scored again."""

    rows: np.ndarray
    fp32: np.ndarray
    torch: np.ndarray
    int8: np.ndarray | None = None


def test_rows(run: RunDir) -> int:
    """How many rows the run's test split has (read from the parquet footer)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(run.split_file("test")).metadata.num_rows


def choose_runtime(
    cfg: PipelineConfig, staged: Path, run: RunDir, model: Any, tokenizer: Any, parity: Scored
) -> tuple[dict[str, Any], ScoredRows | None]:
    """Build the int8 candidates where the CPU has int8 dot-product instructions (dynamic; static QDQ calibrated on
    training sentences only when dynamic can serve, `selection.STATIC_NEEDS_DYNAMIC`, or `export.benchmark`), judge
    them against the fp32 graph and time the eligible ones on a fixed seeded sample of the test split
    (`export.candidate_rows`), then check a chosen int8 graph on the whole split. Without int8 candidates the fp32
    graph is the only one: it is judged on the parity rows, against PyTorch, with the parity's logits. Every graph
    scores each test row at most once (`ScoredRows`: the parity sample lies inside the candidates'); the served
    graph's scored rows are returned for the evaluate step. Quantized graphs neither served nor asked for are deleted.

    The candidates and their table are kept in the store under a key of the fp32 graph's bytes, the sampled test
    rows, the settings and the machine, so an export of the same weights on the same machine (a gates-only config
    change re-runs export) reuses them instead of quantizing and timing again (then nothing is returned to reuse)."""
    labels = model_labels(model, cfg.data.label_names)
    texts, y_true = read_test_split(run, labels)
    skipped = selection.int8_skip_reason()
    rows = parity.rows if skipped else selection.candidate_sample(len(texts), cfg.export.candidate_rows, cfg.train.seed)
    sample = [texts[i] for i in rows]
    cache = runtime_cache(cfg, staged / ONNX_FILE, sample)
    if (cache / "table.json").is_file():
        return reuse_runtime(cfg, cache, staged), None
    metric = cfg.gates.compare_metric
    fp32 = OnnxPredictor.from_dir(staged, graph=ONNX_FILE, cpu_only=True)
    scores = {ONNX_FILE: ScoredRows(fp32.logits, texts)}
    scores[ONNX_FILE].add(parity.rows, parity.fp32)
    fp32_sample = scores[ONNX_FILE].logits(rows)
    if skipped is None:  # the int8 candidates are judged against the fp32 graph (PyTorch's equal by the parity)
        reference, fp32_agreement = fp32_sample, 1.0
    else:
        reference = parity.torch
        fp32_agreement = float((fp32_sample.argmax(-1) == reference.argmax(-1)).mean())
    fp32_labels = fp32_sample.argmax(-1)
    metric_reference = task_metric(y_true[rows], reference, labels, metric)
    fp32_metric = task_metric(y_true[rows], fp32_sample, labels, metric)
    candidates = {"onnxruntime-fp32": (ONNX_FILE, fp32_metric, fp32_agreement)}
    not_built = {}
    if skipped is None:
        if not (staged / INT8_FILE).is_file():
            quantize_dynamic_int8(staged / ONNX_FILE, staged / INT8_FILE)
        for name, graph in (("onnxruntime-int8-dynamic", INT8_FILE), ("onnxruntime-int8-static", STATIC_INT8_FILE)):
            if graph == STATIC_INT8_FILE:
                dynamic_passed = selection.eligible(cfg, *candidates["onnxruntime-int8-dynamic"][1:], metric_reference)
                if not (dynamic_passed or cfg.export.benchmark):
                    not_built[name] = selection.STATIC_NEEDS_DYNAMIC
                    continue
                calibration = calibration_batches(run, fp32, cfg.export.calibration_sentences, cfg.train.seed)
                if not calibration:
                    continue
                quantize_static_int8(staged / ONNX_FILE, staged / STATIC_INT8_FILE, calibration)
            scores[graph] = ScoredRows(OnnxPredictor.from_dir(staged, graph=graph, cpu_only=True).logits, texts)
            if graph == INT8_FILE and parity.int8 is not None:
                scores[graph].add(parity.rows, parity.int8)
            logits = scores[graph].logits(rows)
            agreement = float((logits.argmax(-1) == fp32_labels).mean())
            candidates[name] = (graph, task_metric(y_true[rows], logits, labels, metric), agreement)
    table = selection.select(cfg, staged, candidates, sample, metric_reference, model, tokenizer)
    table["sample"] = {"rows": len(rows), "of": len(texts), "seed": cfg.train.seed}
    table["reference"] = "pytorch" if skipped else "onnxruntime-fp32 (PyTorch's equal on the parity rows)"
    table["not_timed"].update(not_built)
    if skipped is not None:
        table["not_timed"].update({name: skipped for name in selection.INT8_CANDIDATES})
    if table["graph"] != ONNX_FILE:
        table = verify_on_full_split(cfg, staged, table, y_true, labels, scores)
    store_runtime(cache, staged, table)
    keep = {ONNX_FILE, table["graph"], *([INT8_FILE] if cfg.export.quantize_int8 else [])}
    for graph, *_ in candidates.values():
        if graph not in keep:
            (staged / graph).unlink()
    return table, scores[table["graph"]]


def verify_on_full_split(
    cfg: PipelineConfig,
    staged: Path,
    table: dict[str, Any],
    y_true: np.ndarray,
    labels: list[str],
    scores: dict[str, ScoredRows],
) -> dict[str, Any]:
    """A chosen quantized graph on the whole test split: within the metric budget of the fp32 graph's figure there
    (PyTorch's, by the parity gate) and agreeing with it at least `runtime_min_agreement`, or the fp32 graph is
    served instead. Rows already scored on the candidates' sample are not scored again. (The fp32 graph needs no
    such check: it is the reference, and evaluate scores every row with whichever graph is served.)"""
    metric = cfg.gates.compare_metric
    fp32_full = scores[ONNX_FILE].logits()
    logits = scores[table["graph"]].logits()
    metric_fp32 = task_metric(y_true, fp32_full, labels, metric)
    figures = {
        "metric": task_metric(y_true, logits, labels, metric),
        "agreement": float((logits.argmax(-1) == fp32_full.argmax(-1)).mean()),
    }
    passed = selection.eligible(cfg, figures["metric"], figures["agreement"], metric_fp32)
    check = {"runtime": table["chosen"], "rows": len(y_true), "metric_fp32": round(metric_fp32, 6), "passed": passed}
    check.update({key: round(value, 6) for key, value in figures.items()})
    table = {**table, "full_split": check}
    if not passed:
        table.update(chosen="onnxruntime-fp32", graph=ONNX_FILE)
        meta = read_json(staged / META_FILE)
        meta.update(graph=ONNX_FILE, runtime="onnxruntime-fp32")
        write_json(staged / META_FILE, meta)
    return table


def runtime_cache(cfg: PipelineConfig, graph: Path, texts: list[str]) -> Path:
    """The store folder for this graph's runtime choice on this machine with these settings and test texts."""
    import onnxruntime

    parts = [
        file_md5(graph),
        hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        json.dumps(cfg.export.model_dump(mode="json"), sort_keys=True),
        cfg.gates.compare_metric,
        str(cfg.train.seed),
        str(cfg.train.num_threads),
        machine_signature(),
        onnxruntime.__version__,
        RUNTIME_CACHE_VERSION,
    ]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return cfg.paths.cache_dir / "runtimes" / key


def store_runtime(cache: Path, staged: Path, table: dict[str, Any]) -> None:
    """Keep the quantized candidates and the table (staged, then published by rename, like every cache entry)."""
    staging = cache_staging_dir(cache)
    try:
        for row in table["candidates"]:
            if row["graph"] != ONNX_FILE and (staged / row["graph"]).is_file():
                shutil.copy2(staged / row["graph"], staging / row["graph"])
        write_json(staging / "table.json", table)
        publish_cache_entry(staging, cache, marker="table.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def reuse_runtime(cfg: PipelineConfig, cache: Path, staged: Path) -> dict[str, Any]:
    """The cached choice for this graph: the chosen (and any asked-for) quantized graph copied in, tunepipe.json
    updated, the table marked as reused."""
    table = read_json(cache / "table.json")
    wanted = {table["graph"], *([INT8_FILE] if cfg.export.quantize_int8 else [])} - {ONNX_FILE}
    for graph in wanted:
        if (cache / graph).is_file() and not (staged / graph).is_file():
            shutil.copy2(cache / graph, staged / graph)
    meta = read_json(staged / META_FILE)
    meta.update(graph=table["graph"], runtime=table["chosen"])
    write_json(staged / META_FILE, meta)
    return {**table, "reused": f"measured before for this graph on this machine ({cache.name})"}


def calibration_batches(run: RunDir, predictor: OnnxPredictor, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Up to `n` training sentences (a seeded sample), encoded for the graph in batches of 32; empty when the run
    has no train split on disk."""
    path = run.split_file("train")
    if n == 0 or not path.is_file():
        return []
    texts = pd.read_parquet(path, columns=["text"])["text"].astype(str)
    sample = texts.sample(min(n, len(texts)), random_state=seed).tolist()
    size = CALIBRATION_BATCH_SIZE
    return [predictor.encode(sample[i : i + size]) for i in range(0, len(sample), size)]


def int8_summary(parity: dict[str, Any], path: Path) -> dict[str, float]:
    """The int8 graph against PyTorch: agreement, task metric, max logit difference, size."""
    return {
        "agreement": parity["agreement"],
        "metric": parity["metric_onnx"],
        "max_abs_logit_diff": parity["max_abs_logit_diff"],
        "size_mb": round(path.stat().st_size / 2**20, 3),
    }
