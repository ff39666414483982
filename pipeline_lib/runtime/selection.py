"""The serving runtime, chosen by measurement on this machine: every candidate graph of the one ONNX export is
scored on a fixed seeded sample of the test split and timed on real test sentences (batch 1 and 32); the fastest whose
task metric stays within the budget of PyTorch's is written into `tunepipe.json`, which `predict` and `serve` load.
int8 candidates are built only where the CPU has int8 dot-product instructions: elsewhere they cannot be faster."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.config import PipelineConfig
from pipeline_lib.hardware import INT8_DOT_FLAGS, cpu_bf16_flags, int8_dot_flags, usable_cores
from pipeline_lib.runtime.predictor import META_FILE, OnnxPredictor

PROBE_SENTENCES = 8  # sentences every eligible candidate is first timed on, at batch 1
CLEARLY_SLOWER = 1.5  # a probe this many times slower than the best at batch 1 and 32 is not timed further
INT8_CANDIDATES = ("onnxruntime-int8-dynamic", "onnxruntime-int8-static")
# static int8 quantizes the activations too, with ranges fixed in advance: it was the less accurate of the two int8
# graphs in every run measured (bench/RESULTS.md `serving` and `overhead`), so it is built only when dynamic passes
STATIC_NEEDS_DYNAMIC = (
    "not built: the dynamic int8 graph is over the metric budget or the agreement floor, and static int8 (activations "
    "quantized too, with fixed ranges) was the less accurate of the two in every run measured"
)
NO_BF16 = "no bf16 hardware on this CPU (AMX or AVX-512 BF16): bf16 would be emulated, several times slower than fp32"


def int8_skip_reason(flags: frozenset[str] | None = None) -> str | None:
    """Why the int8 candidates are not built on a CPU with `flags` (default: this one's), or None where they can win:
    without an int8 dot-product instruction onnxruntime's int8 kernels are no faster than fp32."""
    if int8_dot_flags(flags):
        return None
    return (
        f"no int8 dot-product instructions on this CPU ({', '.join(INT8_DOT_FLAGS)}): int8 cannot be faster than "
        "fp32 here, so it was not built"
    )


def candidate_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Row indices (ascending) of a fixed sample of `size` of `n` test rows, drawn with `seed`: the same rows for the
    same split and seed on every machine; every row when `size >= n`. Samples of one split and seed are nested (the
    first `size` of one seeded permutation): the parity sample lies inside the candidates', whose rows are scored
    once (`runtime.scored_rows`)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def eligible(cfg: PipelineConfig, metric: float, agreement: float, metric_reference: float) -> bool:
    """Whether a candidate can serve: its task metric within `runtime_metric_budget` of the reference's on the same
    rows and its labels agreeing with the fp32 graph's at least `runtime_min_agreement` of the time."""
    budget, floor = cfg.export.runtime_metric_budget, cfg.export.runtime_min_agreement
    return metric >= metric_reference - budget and agreement >= floor


def time_batches(predict: Callable[[list[str]], Any], texts: list[str], batch_size: int, rounds: int) -> list[float]:
    """Seconds per call of `predict` on consecutive batches of `texts` (after one warm-up call)."""
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)][:rounds] or [texts]
    predict(batches[0])
    timings = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - start)
    return timings


def speed(
    predict: Callable[[list[str]], Any], texts: list[str], rounds: int, batch32_rounds: int = 2
) -> dict[str, float]:
    """Median latency at batch 1 (ms) and throughput at batch 32 (samples/s) on real-length sentences."""
    single = time_batches(predict, texts, 1, rounds)
    pool = (texts * (64 // max(1, len(texts)) + 1))[: 32 * batch32_rounds]
    batched = time_batches(predict, pool, 32, batch32_rounds)
    return {
        "p50_ms_batch1": round(statistics.median(single) * 1000, 3),
        "samples_per_s_batch32": round(len(pool) / sum(batched), 1),
    }


def torch_reference(model: Any, tokenizer: Any, max_length: int, bf16: bool) -> Callable[[list[str]], Any]:
    """PyTorch inference (fp32, or under CPU bf16 autocast) as a reference to beat."""
    import torch

    def predict(texts: list[str]) -> Any:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).logits

    return predict


def select(
    cfg: PipelineConfig,
    folder: Path,
    candidates: dict[str, tuple[str, float, float]],
    texts: list[str],
    metric_torch: float,
    model: Any,
    tokenizer: Any,
) -> dict[str, Any]:
    """Judge each candidate `{name: (graph file, task metric, label agreement with fp32)}` (scored on the rows whose
    `texts` are given; `metric_torch` on the same rows), time only what can change the choice, record the fastest
    eligible one in the folder's tunepipe.json, and return the table.

    A candidate over the metric budget is not timed (it cannot be chosen). Eligible ones are first timed on a short
    probe (`PROBE_SENTENCES` at batch 1, one batch of 32); one `CLEARLY_SLOWER` than the best probe at both batch
    sizes is not timed further, and the only eligible one is timed on the probe alone. PyTorch fp32 (and bf16 where
    the CPU does bf16 in hardware) are timed as references only with `export.benchmark`, which also times every
    candidate in full (the benchmarks set it): references never change the choice. Whatever was not timed is listed
    with the reason in `not_timed`."""
    import torch

    threads = cfg.train.num_threads or usable_cores()
    torch.set_num_threads(threads)
    texts = texts[: cfg.export.runtime_timing_sentences]
    budget = cfg.export.runtime_metric_budget
    rows, not_timed, predictors = [], {}, {}
    for name, (graph, metric, agreement) in candidates.items():
        can_serve = eligible(cfg, metric, agreement, metric_torch)
        rows.append(
            {
                "runtime": name,
                "graph": graph,
                "metric": round(metric, 6),
                "agreement": round(agreement, 6),
                "eligible": can_serve,
            }
        )
        if can_serve or cfg.export.benchmark:
            predictors[name] = OnnxPredictor.from_dir(folder, num_threads=threads, cpu_only=True, graph=graph)
        else:
            not_timed[name] = "over the metric budget or the agreement floor: it cannot be chosen"
    probes = {
        name: speed(p.logits, texts[:PROBE_SENTENCES], PROBE_SENTENCES, batch32_rounds=1)
        for name, p in predictors.items()
    }
    can_win = {row["runtime"] for row in rows if row["eligible"]}
    alone = len(can_win) == 1 and not cfg.export.benchmark  # nothing to choose between: the probe is its timing
    best_latency = min((p["p50_ms_batch1"] for n, p in probes.items() if n in can_win), default=0.0)
    best_rate = max((p["samples_per_s_batch32"] for n, p in probes.items() if n in can_win), default=0.0)
    for row in rows:
        name = row["runtime"]
        if name not in probes:
            continue
        probe = probes[name]
        slower = (
            probe["p50_ms_batch1"] > CLEARLY_SLOWER * best_latency
            and probe["samples_per_s_batch32"] * CLEARLY_SLOWER < best_rate
        )
        if alone and name in can_win:
            row.update(probe, timed="probe")
            not_timed[name] = f"the only eligible candidate: timed on the {PROBE_SENTENCES}-sentence probe only"
        elif slower and not cfg.export.benchmark:
            row.update(probe, timed="probe")
            not_timed[name] = f"clearly slower than the best on the {PROBE_SENTENCES}-sentence probe at batch 1 and 32"
        else:
            row.update(speed(predictors[name].logits, texts, len(texts)), timed="full")
    references = []
    if cfg.export.benchmark:
        model.eval()
        precisions = {"pytorch-fp32": False, "pytorch-bf16": True}
        if not cpu_bf16_flags():
            not_timed["pytorch-bf16"] = NO_BF16
        references = [
            {"runtime": name, **speed(torch_reference(model, tokenizer, cfg.model.max_length, bf16), texts, len(texts))}
            for name, bf16 in precisions.items()
            if name not in not_timed
        ]
    else:
        not_timed["pytorch references"] = "export.benchmark is off: a reference never changes the choice"
    timed = [row for row in rows if row.get("timed") == "full" and row["eligible"]]
    servable = [row for row in rows if row["eligible"]]
    fallback = servable[0] if alone else rows[0]
    chosen = min(timed, key=lambda row: (row["p50_ms_batch1"], -row["samples_per_s_batch32"])) if timed else fallback
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta.update(graph=chosen["graph"], runtime=chosen["runtime"])
    meta_file.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return {
        "chosen": chosen["runtime"],
        "graph": chosen["graph"],
        "metric_torch": round(metric_torch, 6),
        "metric_budget": budget,
        "threads": threads,
        "sentences": len(texts),
        "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1) if texts else 0.0,
        "candidates": rows,
        "references": references,
        "not_timed": not_timed,
    }
