"""PyTorch inference at inference speed, for the evaluate step where it scores in PyTorch (token classification, a run
without an export) and for the export's parity check: the run's precision (bf16 only where the hardware does it
natively), every usable core, and texts run in length-sorted batches padded only to each batch's longest text (rows
come back in input order)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib import hardware

# Texts per length-sorted batch on CPU. Sorted, a batch pads to little at any size (FPB's test split: 13.7k real
# tokens, 28.6k when run in input order at 64), so the size only trades per-call overhead against cache locality:
# on the 2-core AVX2 machine (shared with other jobs) 64 and 128 scored the FPB test split within noise of each
# other and 16 or 32 were slower. The training batch size is no guide to it.
CPU_BATCH_SIZE = 64
GPU_BATCH_SIZE = 256


@dataclass(frozen=True)
class InferenceSettings:
    """How a saved PyTorch model is run for scoring."""

    precision: str  # fp32, bf16 (autocast, hardware bf16 only) or fp16 (CUDA autocast)
    device: str  # "cpu" or "cuda"
    threads: int  # torch intra-op threads (CPU)
    batch_size: int  # texts (classification) or windows (NER) per length-sorted batch


def inference_settings(
    requested_precision: str,
    num_threads: int | None = None,
    train_summary: Path | None = None,
    capability: hardware.Capability | None = None,
) -> InferenceSettings:
    """The run's precision (the train step's, when its summary says; else `requested_precision` resolved for this
    machine), kept only where the hardware runs it natively: bf16 without AMX / AVX-512 BF16 (or a CUDA device
    that has it) would be emulated, several times slower than fp32, so it falls back to fp32."""
    capability = capability or hardware.detect()
    precision = None
    if train_summary is not None and train_summary.is_file():
        precision = json.loads(train_summary.read_text(encoding="utf-8")).get("precision")
    if precision not in ("fp32", "bf16", "fp16"):
        precision = hardware.resolve_precision(requested_precision, capability)
    if (precision == "bf16" and not capability.bf16) or (precision == "fp16" and capability.device != "cuda"):
        precision = "fp32"
    batch = GPU_BATCH_SIZE if capability.device == "cuda" else CPU_BATCH_SIZE
    return InferenceSettings(precision, capability.device, num_threads or capability.cores, batch)


def torch_runner(model: Any, settings: InferenceSettings) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """`run(features) -> logits` (float32 numpy) for the model on `settings`' device, precision and threads."""
    import torch

    if settings.device == "cpu":
        torch.set_num_threads(settings.threads)
    model.to(settings.device).eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.precision)

    def run(features: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {name: torch.from_numpy(array).to(settings.device) for name, array in features.items()}
        with torch.inference_mode(), torch.autocast(settings.device, dtype=dtype, enabled=dtype is not None):
            return model(**tensors).logits.float().cpu().numpy()

    return run


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row indices in batches of `batch_size` rows of similar length (ascending, stable: ties keep input order)."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_rows(columns: dict[str, list[list[int]]], rows: np.ndarray, pads: dict[str, int]) -> dict[str, np.ndarray]:
    """The `rows` of each column right-padded to the longest of them (with `pads[name]`, else 0)."""
    width = max(len(columns["input_ids"][k]) for k in rows)
    out = {}
    for name, sequences in columns.items():
        array = np.full((len(rows), width), pads.get(name, 0), dtype=np.int64)
        for i, k in enumerate(rows):
            array[i, : len(sequences[k])] = sequences[k]
        out[name] = array
    return out


def batched_logits(
    run_batch: Callable[[dict[str, np.ndarray]], np.ndarray],
    columns: dict[str, list[list[int]]],
    batch_size: int,
    pads: dict[str, int],
    n_labels: int,
    advance: Callable[[], None] | None = None,
) -> np.ndarray:
    """One logits row per encoded text (`columns`: input name -> unpadded token lists), computed in length-sorted
    batches padded to each batch's longest text; rows in input order. `advance` is called after each batch."""
    n = len(columns["input_ids"])
    logits = np.zeros((n, n_labels), dtype=np.float32)
    for rows in sorted_batches([len(ids) for ids in columns["input_ids"]], batch_size):
        logits[rows] = run_batch(pad_rows(columns, rows, pads))
        if advance is not None:
            advance()
    return logits
