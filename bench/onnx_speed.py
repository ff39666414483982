"""PyTorch vs onnxruntime fp32 (optimized) vs onnxruntime int8 (dynamic), same thread count.

    python bench/onnx_speed.py [--model-dir RUN/model] [--threads 2] [--data .../Sentences_AllAgree.txt]

Batch 1 and 32, padded to 128 tokens and at real sentence lengths (Financial PhraseBank sentences, padded
to the longest in each batch). With `--model-dir` (a fine-tuned model folder) the table also gives macro-F1
of the three on the labelled sentences; without it the default encoder with a seeded random head is timed
(agreement only). `--exporter torchscript` exports eager attention, which the optimizer fuses into
`Attention`. Writes the `onnx_speed_<exporter>` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import SHARED_DATA, machine, write_section

from pipeline_lib.environment import apply_quiet_env

LABELS = ["negative", "neutral", "positive"]
PHRASEBANK = SHARED_DATA / "financial_phrasebank" / "Sentences_AllAgree.txt"


def read_sentences(path: Path, n: int) -> tuple[list[str], list[int]]:
    """`sentence@label` lines (ISO-8859-1), a seeded sample of `n`."""
    rows = [line.rsplit("@", 1) for line in path.read_text(encoding="iso-8859-1").splitlines() if "@" in line]
    picks = np.random.default_rng(0).permutation(len(rows))[:n]
    return [rows[i][0].strip() for i in picks], [LABELS.index(rows[i][1].strip()) for i in picks]


def load_model(model_dir: str | None) -> tuple[object, object]:
    import torch

    from pipeline_lib.runtime.onnx_export import load_trained
    from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source

    if model_dir:
        return load_trained(Path(model_dir), "sequence_classification")
    source = resolve_model_source("default")
    torch.manual_seed(0)
    return load_classifier(source, LABELS).eval(), load_tokenizer(source)


def build_graphs(model: object, tokenizer: object, folder: Path, exporter: str) -> dict[str, object]:
    """The export step's ONNX folder: optimized fp32 graph and int8 graph."""
    from pipeline_lib.runtime.onnx_export import graph_input_names, optimize_graph, write_onnx_folder
    from pipeline_lib.runtime.predictor import INT8_FILE, ONNX_FILE
    from pipeline_lib.runtime.quantization import quantize_dynamic_int8

    meta = {
        "task": "sequence_classification",
        "labels": LABELS,
        "max_length": 128,
        "input_names": graph_input_names(tokenizer),
        "opset": 18,
        "exporter": exporter,
    }
    write_onnx_folder(model, tokenizer, meta, folder)
    fused = optimize_graph(folder / ONNX_FILE, model.config)
    quantize_dynamic_int8(folder / ONNX_FILE, folder / INT8_FILE)
    return {"fused": fused, "names": meta["input_names"]}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of `repeats` calls after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(PHRASEBANK))
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    args = parser.parse_args()
    apply_quiet_env()

    import onnxruntime as ort
    import torch

    from pipeline_lib.runtime.predictor import INT8_FILE, ONNX_FILE

    torch.set_num_threads(args.threads)
    texts, y = read_sentences(Path(args.data), args.sentences)
    model, tokenizer = load_model(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        info = build_graphs(model, tokenizer, folder, args.exporter)
        sizes = {k: (folder / f).stat().st_size / 2**20 for k, f in (("fp32", ONNX_FILE), ("int8", INT8_FILE))}
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        sessions = {
            k: ort.InferenceSession(str(folder / f), options, providers=["CPUExecutionProvider"])
            for k, f in (("fp32", ONNX_FILE), ("int8", INT8_FILE))
        }

        def encode(batch: list[str], padded: bool) -> dict[str, np.ndarray]:
            enc = tokenizer(
                batch,
                padding="max_length" if padded else "longest",
                truncation=True,
                max_length=128,
                return_tensors="np",
            )
            return {n: enc[n].astype(np.int64) for n in info["names"]}

        def runners(features: dict[str, np.ndarray]) -> dict[str, Callable[[], np.ndarray]]:
            tensors = {n: torch.from_numpy(a) for n, a in features.items()}

            def run_torch() -> np.ndarray:
                with torch.inference_mode():
                    return model(**tensors).logits.numpy()

            return {
                "torch": run_torch,
                **{k: (lambda s=s: s.run(["logits"], features)[0]) for k, s in sessions.items()},
            }

        rows = []
        lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
        for batch_size in (1, 32):
            for padded in (True, False):
                batches = [texts[i : i + batch_size] for i in range(0, 4 * batch_size, batch_size)]
                per = {"torch": [], "fp32": [], "int8": []}
                for batch in batches:
                    for name, fn in runners(encode(batch, padded)).items():
                        per[name].append(timed(fn, 10 if batch_size == 1 else 3))
                ms = {k: float(np.mean(v)) for k, v in per.items()}
                seq = "128 (padded)" if padded else f"real (median {int(np.median(lengths))} tokens)"
                rows.append((batch_size, seq, ms))

        logits = {"torch": [], "fp32": [], "int8": []}
        for i in range(0, len(texts), 32):
            for name, fn in runners(encode(texts[i : i + 32], False)).items():
                logits[name].append(fn())
        pred = {k: np.concatenate(v).argmax(-1) for k, v in logits.items()}

    from pipeline_lib.task_types.bootstrap import fast_metric

    quality = {k: fast_metric(np.array(y), p, 3, "macro_f1", LABELS) for k, p in pred.items()}
    agree = {k: float((pred[k] == pred["torch"]).mean()) for k in ("fp32", "int8")}
    table = "\n".join(
        f"| {b} | {seq} | {ms['torch']:.1f} | {ms['fp32']:.1f} | {ms['int8']:.1f} | "
        f"{ms['torch'] / ms['fp32']:.2f}x | {ms['torch'] / ms['int8']:.2f}x |"
        for b, seq, ms in rows
    )
    trained = f"fine-tuned model `{args.model_dir}`" if args.model_dir else "default encoder, seeded random head"
    body = f"""## ONNX speed, {args.exporter} export: PyTorch vs onnxruntime fp32-optimized vs int8 (issue 5)

all-MiniLM-L6-v2 sequence classifier ({trained}), {args.threads} threads for all three (torch
`set_num_threads`, ORT `intra_op_num_threads`), CPU execution provider. Median ms per batch, mean over 4
batches of Financial PhraseBank sentences.

| batch | sequence length | PyTorch ms | ORT fp32-opt ms | ORT int8 ms | fp32 speed-up | int8 speed-up |
|---|---|---|---|---|---|---|
{table}

Graph: fp32 {sizes["fp32"]:.1f} MB, fused ops {info["fused"]}; int8 {sizes["int8"]:.1f} MB.
Quality on {len(texts)} labelled PhraseBank AllAgree sentences: macro-F1 PyTorch {quality["torch"]:.4f},
ORT fp32 {quality["fp32"]:.4f}, int8 {quality["int8"]:.4f}; agreement with PyTorch fp32 {agree["fp32"]:.4f},
int8 {agree["int8"]:.4f}.
Machine: {machine()}; onnxruntime {ort.__version__}; load average at the end {os.getloadavg()[0]:.1f}
(other jobs shared the machine when the load exceeds the thread count: compare rows, not runs)."""
    fp32 = [ms["torch"] / ms["fp32"] for _, _, ms in rows]
    int8 = [ms["torch"] / ms["int8"] for _, _, ms in rows]
    figure = (
        f"over PyTorch: fp32 {min(fp32):.2f}–{max(fp32):.2f}x, int8 {min(int8):.2f}–{max(int8):.2f}x "
        f"(batch 1 and 32); int8 agreement {agree['int8']:.3f}"
    )
    question = f"ONNX speed, {args.exporter} export"
    write_section(f"onnx_speed_{args.exporter}", body, [(question, figure, "fp32 ≥ 2x, int8 ≥ 3x")])
    print(body)


if __name__ == "__main__":
    main()
