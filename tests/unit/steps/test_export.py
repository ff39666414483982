"""The export step on a tiny run: real torch export, real onnxruntime parity, atomic publishing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pandas as pd
import pytest
import torch

from pipeline_lib.config import PipelineConfig
from pipeline_lib.gates.checks import parity_checks
from pipeline_lib.layout import RunDir, read_json
from pipeline_lib.steps.export import ExportResult, export
from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source

LABELS = ["negative", "neutral", "positive"]
TEST_ROWS = [
    ("Operating profit fell to EUR 3.1 mn from EUR 8.7 mn a year earlier.", "negative"),
    ("The company will cut 120 jobs after a weak quarter.", "negative"),
    ("Shares dropped 9% after the profit warning.", "negative"),
    ("Net sales decreased by 14 percent.", "negative"),
    ("The annual general meeting will be held in Helsinki.", "neutral"),
    ("The company operates in 12 countries.", "neutral"),
    ("The report will be published on Thursday.", "neutral"),
    ("Its headquarters are located in Espoo, Finland.", "neutral"),
    ("Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "positive"),
    ("The group won a EUR 40 mn order from a German utility.", "positive"),
    ("Quarterly revenue grew 25% on strong demand.", "positive"),
    ("The board proposes a higher dividend of EUR 0.50 per share.", "positive"),
]


def make_trained_run(root: Path, model_input_names: list[str] | None = None) -> RunDir:
    """A run dir as the train step leaves it: the default encoder with a fresh, seeded 3-label head."""
    run = RunDir(root)
    source = resolve_model_source("default")
    torch.manual_seed(0)
    load_classifier(source, LABELS).save_pretrained(run.model_dir)
    tokenizer = load_tokenizer(source)
    if model_input_names is not None:  # e.g. an encoder without token_type_ids (MPNet, DistilBERT)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, model_input_names=model_input_names)
    tokenizer.save_pretrained(run.model_dir)
    run.split_file("test").parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(TEST_ROWS, columns=["text", "label"]).to_parquet(run.split_file("test"))
    pd.DataFrame(TEST_ROWS[::-1], columns=["text", "label"]).to_parquet(run.split_file("train"))  # calibration
    return run


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    # the serving-runtime choice is tested in test_runtimes.py; here it would only add its timing
    return PipelineConfig.model_validate(
        {"data": {"labels": LABELS}, "export": {"optimize": True, "quantize_int8": True, "select_runtime": False}}
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, cfg: PipelineConfig) -> tuple[RunDir, ExportResult]:
    run = make_trained_run(tmp_path_factory.mktemp("export") / "run")
    return run, export(cfg, run)


def graph_dims(path: Path) -> dict[str, list[str | int]]:
    model = onnx.load(str(path), load_external_data=False)
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }


def temp_dirs(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.root.iterdir() if p.name.startswith(".onnx."))


def test_onnx_folder_contents(exported: tuple[RunDir, ExportResult], cfg: PipelineConfig) -> None:
    run, result = exported
    files = {p.name for p in run.onnx_dir.iterdir()}
    assert {"model.onnx", "tunepipe.json", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not any(name.endswith(".data") for name in files), "external data must not be written"
    assert (
        read_json(run.onnx_dir / "tunepipe.json").items()
        >= {
            "task": "sequence_classification",
            "labels": LABELS,
            "max_length": cfg.model.max_length,
            "input_names": ["input_ids", "attention_mask", "token_type_ids"],
            "opset": cfg.export.opset,
        }.items()
    )
    assert result.onnx_path == str(run.onnx_dir / "model.onnx")
    assert 50 < result.size_mb < 200
    assert temp_dirs(run) == []


def test_graph_has_dynamic_batch_and_sequence(exported: tuple[RunDir, ExportResult]) -> None:
    run, _ = exported
    dims = graph_dims(run.onnx_dir / "model.onnx")
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert all(isinstance(d, str) and d for d in dims[name]), f"{name} dims {dims[name]} are not symbolic"
    assert isinstance(dims["logits"][0], str)
    assert dims["logits"][1] == len(LABELS)


def test_parity_on_test_split(exported: tuple[RunDir, ExportResult]) -> None:
    run, result = exported
    assert result.max_abs_logit_diff < 1e-3
    assert result.agreement == 1.0
    assert result.metric_name == "macro_f1"
    assert result.metric_torch == result.metric_onnx
    assert result.n == len(TEST_ROWS)
    assert read_json(run.export_summary) == result.to_dict()


def test_graph_is_optimized_and_int8_graph_has_its_own_parity(exported: tuple[RunDir, ExportResult]) -> None:
    run, result = exported
    ops = {node.op_type for node in onnx.load(str(run.onnx_dir / "model.onnx")).graph.node}
    assert "SkipLayerNormalization" in ops and result.optimizer["SkipLayerNormalization"] == 12
    int8_ops = {node.op_type for node in onnx.load(str(run.onnx_dir / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in int8_ops or "MatMulInteger" in int8_ops
    assert result.int8["size_mb"] < result.size_mb / 2
    assert 0 <= result.int8["agreement"] <= 1 and result.int8["max_abs_logit_diff"] > result.max_abs_logit_diff
    names = [
        c.name for c in parity_checks(PipelineConfig.model_validate({"data": {"labels": LABELS}}), result.to_dict())
    ]
    assert names[-2:] == ["int8:agreement", "int8:metric_drop"]


def test_unknown_metric_fails_before_exporting(exported: tuple[RunDir, ExportResult]) -> None:
    run, _ = exported
    bad = PipelineConfig.model_validate({"data": {"labels": LABELS}, "gates": {"compare_metric": "auc"}})
    with pytest.raises(ValueError, match="compare_metric='auc'"):
        export(bad, run)
    assert run.export_summary.is_file()


def test_label_mismatch_is_refused(exported: tuple[RunDir, ExportResult]) -> None:
    run, _ = exported
    other = PipelineConfig.model_validate({"data": {"labels": ["positive", "negative", "neutral"]}})
    with pytest.raises(ValueError, match=r"differ from data\.labels"):
        export(other, run)


def kill_during_export(run: RunDir, timeout: float = 120) -> None:
    """Start `export` in a subprocess and SIGKILL it as soon as its staging folder appears."""
    code = (
        "from pipeline_lib.config import load_config; from pipeline_lib.steps.export import export; "
        "from pipeline_lib.layout import RunDir; "
        f"export(load_config(None, [{'data.labels=[' + ','.join(LABELS) + ']'!r}]), RunDir({str(run.root)!r}))"
    )
    before = set(temp_dirs(run))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout
    try:
        while set(temp_dirs(run)) == before:
            assert proc.poll() is None, "export finished before it could be killed"
            assert time.monotonic() < deadline, "export never created its staging folder"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_killed_export_leaves_previous_folder_and_reexport_recovers(
    exported: tuple[RunDir, ExportResult], cfg: PipelineConfig, tmp_path: Path
) -> None:
    """A killed export leaves only a hidden staging folder; the next export cleans it and swaps atomically.

    The re-export uses a tokenizer without token_type_ids, so the swap is visible in tunepipe.json.
    """
    source, _ = exported
    run = make_trained_run(tmp_path / "run", model_input_names=["input_ids", "attention_mask"])
    shutil.copytree(source.onnx_dir, run.onnx_dir)
    kill_during_export(run)
    assert temp_dirs(run), "the killed export should have left its staging folder"
    assert read_json(run.onnx_dir / "tunepipe.json")["input_names"][-1] == "token_type_ids"

    result = export(cfg, run)

    assert temp_dirs(run) == []
    assert read_json(run.onnx_dir / "tunepipe.json")["input_names"] == ["input_ids", "attention_mask"]
    assert set(graph_dims(run.onnx_dir / "model.onnx")) == {"input_ids", "attention_mask", "logits"}
    assert result.max_abs_logit_diff < 1e-3
    assert result.agreement == 1.0


def test_torchscript_exporter_gives_fused_attention_with_parity(tmp_path: Path) -> None:
    run = make_trained_run(tmp_path / "run")
    settings = {"exporter": "torchscript", "quantize_int8": True, "select_runtime": False}
    result = export(PipelineConfig.model_validate({"data": {"labels": LABELS}, "export": settings}), run)
    ops = {node.op_type for node in onnx.load(str(run.onnx_dir / "model.onnx")).graph.node}
    assert result.optimizer["Attention"] == 6 and "Attention" in ops
    assert result.max_abs_logit_diff < 1e-3 and result.agreement == 1.0
    dims = graph_dims(run.onnx_dir / "model.onnx")
    assert all(isinstance(d, str) for d in dims["input_ids"]) and dims["logits"][1] == len(LABELS)
    assert read_json(run.onnx_dir / "tunepipe.json")["exporter"] == "torchscript"
    assert result.int8["size_mb"] < result.size_mb / 2 and result.int8["agreement"] >= 0.5
