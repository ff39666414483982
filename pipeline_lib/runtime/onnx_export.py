"""Write the fine-tuned model as an ONNX folder: `model.onnx` (one file, no external data; TorchScript or dynamo
exporter), the tokenizer files and `tunepipe.json`, built in a temporary folder and renamed into place, so it only
ever appears complete; then onnxruntime's transformer optimizer fuses attention, LayerNorm and GELU.
torch and transformers are imported inside the functions: importing this module stays cheap."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline_lib.layout import write_json
from pipeline_lib.runtime.predictor import META_FILE, ONNX_FILE, OUTPUT_NAME
from pipeline_lib.task_types import task_for

CANONICAL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # order of the ONNX graph inputs


_TMP_PREFIX = ".onnx.tmp-"


_OLD_PREFIX = ".onnx.old-"


_EXAMPLE_TEXTS = ("an example input for the exporter", "a short one")  # batch 2, seq >= 3: dims stay dynamic


def load_trained(model_dir: Path, task: str) -> tuple[Any, Any]:
    """The fine-tuned model (float32, safetensors only, no remote code, eval mode) and its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: run the train step first")
    model = (
        task_for(task)
        .auto_model()
        .from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False)
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
