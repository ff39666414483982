"""Training-engine speed: samples/s, non-pad tokens/s and MFU of tunepipe's train step, for the default model and a
BERT-base-size encoder, on whatever this machine has (CUDA GPU or CPU).

    python bench/engine_speed.py [--models default bert-base] [--steps 40] [--batch-size 16] [--set k=v ...]

Each model runs tunepipe's train step (precision auto, length-grouped batches, dynamic padding, fused AdamW) for
`--steps` optimizer steps on Financial PhraseBank 50Agree (configs/financial_phrasebank.yaml). `bert-base` is a
randomly initialised BertConfig() (12 layers, hidden 768, 110M parameters) with the default model's uncased
vocabulary: speed does not depend on the weights. Throughput counts only the optimizer steps (the train summary's
`step_seconds`); tokens/s = samples/s x the train split's mean non-pad length; MFU = 6·N·tokens/s over the peak
(N non-embedding parameters; H100 bf16 dense 989 TFLOP/s; CPU: cores x GHz x 64 fp32 / 1024 bf16 FLOP/cycle).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _results import FPB_50AGREE, REPO, machine, peak_flops, timed_steps, write_section

from pipeline_lib.config import load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.hardware import usable_cores
from pipeline_lib.layout import RunDir, read_json

GPU_PEAK = {"H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, "A100": {"bf16": 312e12, "fp16": 312e12}}


def bert_base(folder: Path) -> str:
    """A random-init BERT-base classifier with the default model's tokenizer, saved as a local model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pipeline_lib.training.modeling import resolve_model_source

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(num_labels=3)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_source("default")).save_pretrained(folder)
    return str(folder)


def peak(precision: str) -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        table = next((v for k, v in GPU_PEAK.items() if k in name), None)
        if table is None or precision not in table:
            return float("nan"), f"{name} (peak unknown)"
        return table[precision], name
    return peak_flops(precision if precision in ("fp32", "bf16") else "fp32", usable_cores()), "CPU"


def measure(model: str, source: str, args: argparse.Namespace, tmp: Path) -> dict:
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification

    cfg = load_config(
        REPO / "configs/financial_phrasebank.yaml",
        [
            f"data.path={args.data}",
            f"paths.store={tmp}/store-{model}",
            f"model.name={source}",
            f"train.max_steps={args.steps}",
            f"train.batch_size={args.batch_size}",
            "train.early_stopping_patience=0",
            *args.overrides,
        ],
    )
    run = RunDir(tmp / f"run-{model}")
    timed_steps(cfg, run, ("validate", "tokenize", "train"))
    summary = read_json(run.train_summary)
    lengths = load_from_disk(str(run.tokenized))["train"]["length"]
    mean_tokens = sum(lengths) / len(lengths)
    net = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    n = sum(p.numel() for name, p in net.named_parameters() if "embeddings" not in name)
    sps = summary["step_samples_per_second"]
    flops = 6 * n * sps * mean_tokens
    top, device = peak(summary["precision"])
    return {
        "model": model,
        "params": sum(p.numel() for p in net.parameters()),
        "precision": summary["precision"],
        "device": device,
        "steps": summary["global_step"],
        "samples_per_s": sps,
        "tokens_per_s": sps * mean_tokens,
        "tflops": flops / 1e12,
        "mfu": flops / top,
        "step_seconds": summary["step_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FPB_50AGREE))
    parser.add_argument("--models", nargs="+", default=["default", "bert-base"], choices=["default", "bert-base"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    apply_quiet_env()

    with tempfile.TemporaryDirectory() as tmp:
        sources = {"default": "default"}
        if "bert-base" in args.models:
            sources["bert-base"] = bert_base(Path(tmp) / "bert-base-random")
        rows = [measure(model, sources[model], args, Path(tmp)) for model in args.models]

    lines = [
        "| model | parameters | device | precision | steps | samples/s | non-pad tokens/s | TFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['device']} | {r['precision']} | {r['steps']} | "
            f"{r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['tflops']:.3f} | {r['mfu']:.1%} |"
            for r in rows
        ),
    ]
    body = (
        "## Training engine speed (issue 6)\n\n"
        f"tunepipe's train step, Financial PhraseBank 50Agree, batch {args.batch_size}, max length 64, "
        f"{args.steps} optimizer steps per model (steady state: evaluation, checkpoints and start-up excluded). "
        "`bert-base` is a random-init BertConfig() (speed only).\n\n" + "\n".join(lines) + f"\n\nMachine: {machine()}."
    )
    figure = "; ".join(
        f"{r['model']} {r['samples_per_s']:.1f} samples/s ({r['precision']}, MFU {r['mfu']:.1%})" for r in rows
    )
    device = rows[0]["device"] if rows else "CPU"
    write_section(
        "engine_speed_gpu" if device != "CPU" else "engine_speed_cpu",
        body,
        [(f"Training engine speed on {device}", figure, "—")],
    )
    print(body)


if __name__ == "__main__":
    main()
