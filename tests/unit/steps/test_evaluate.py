"""The evaluate step at inference speed: through the served ONNX graph after the export, else PyTorch's
length-sorted batches, which give the naive path's logits, rows in input order, at the run's precision only where the
hardware has it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline_lib import hardware
from pipeline_lib.config import PipelineConfig
from pipeline_lib.hardware import Capability
from pipeline_lib.layout import RunDir, read_json
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.steps.evaluate import evaluate
from pipeline_lib.steps.export import export
from pipeline_lib.task_types.classification import torch_logits
from pipeline_lib.task_types.inference import batched_logits, inference_settings, sorted_batches
from pipeline_lib.task_types.metrics import classification_metrics, flat_metrics
from tests.unit.steps.test_export import LABELS, TEST_ROWS, make_trained_run


def cpu(bf16: bool = False, cores: int = 2) -> Capability:
    return Capability("cpu", "test cpu", bf16, ("avx512_bf16",) if bf16 else (), cores)


def test_sorted_batches_cover_every_row_once_in_length_order() -> None:
    lengths = [5, 2, 9, 2, 7, 1, 5]
    batches = sorted_batches(lengths, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # ascending: each batch pads to little
    assert flat.tolist()[:3] == [5, 1, 3]  # ties keep input order (stable)


def test_batched_logits_pad_per_batch_and_restore_input_order() -> None:
    columns = {"input_ids": [[3, 4, 5], [7], [1, 2], [9, 9, 9, 9]], "attention_mask": [[1, 1, 1], [1], [1, 1], [1] * 4]}
    widths = []

    def run(features: dict[str, np.ndarray]) -> np.ndarray:
        ids, mask = features["input_ids"], features["attention_mask"]
        widths.append(ids.shape[1])
        assert (ids[mask == 0] == 0).all()  # padded with the pad id where the mask is 0
        real = (ids * mask).sum(axis=1).astype(np.float32)
        return np.stack([real, mask.sum(axis=1).astype(np.float32)], axis=1)

    logits = batched_logits(run, columns, 2, {"input_ids": 0}, 2)
    assert widths == [2, 4]  # [7],[1,2] then [3,4,5],[9,9,9,9]: never padded to the longest of all
    np.testing.assert_array_equal(logits[:, 0], [12, 7, 3, 36])
    np.testing.assert_array_equal(logits[:, 1], [3, 1, 2, 4])


def naive_logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    """One text at a time, no padding at all: the reference the batched path must match."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    with torch.inference_mode():
        rows = [model(**tokenizer([t], truncation=True, max_length=128, return_tensors="pt")).logits for t in texts]
    return torch.cat(rows).numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    return make_trained_run(tmp_path_factory.mktemp("evaluate") / "run")


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_sorted_batches_give_the_naive_logits_in_input_order(trained: RunDir, batch_size: int) -> None:
    texts = [text for text, _ in TEST_ROWS]
    reference = naive_logits(trained.model_dir, texts)
    settings = inference_settings("fp32", capability=cpu())
    logits = torch_logits(trained.model_dir, texts, 128, batch_size=batch_size, settings=settings)
    np.testing.assert_allclose(logits, reference, atol=1e-4)
    assert (logits.argmax(-1) == reference.argmax(-1)).all()


def test_evaluate_step_metrics_equal_the_naive_path(trained: RunDir) -> None:
    """Before any export (`tunepipe step evaluate` alone, or token classification): PyTorch at inference speed."""
    cfg = PipelineConfig.model_validate({"data": {"labels": LABELS}, "train": {"precision": "fp32"}})
    result = evaluate(cfg, trained)
    frame = pd.read_parquet(trained.split_file("test"))
    reference = naive_logits(trained.model_dir, list(frame["text"]))
    y_true = np.array([LABELS.index(label) for label in frame["label"]])
    expected = flat_metrics(classification_metrics(y_true, reference.argmax(-1), LABELS))
    assert result.metrics == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(np.load(trained.predictions), reference, atol=1e-4)
    assert (result.runtime, result.precision) == ("pytorch", "fp32")
    assert read_json(trained.predictions_info)["runtime"] == "pytorch"


@pytest.mark.parametrize("int8_cpu", [False, True])
def test_after_export_the_split_is_scored_once_through_the_served_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, int8_cpu: bool
) -> None:
    """The flow's order: export checks PyTorch against ONNX on a seeded sample, then evaluate scores every test row
    through the graph export chose, and nothing through PyTorch again: same metrics as PyTorch's on every row. The
    rows the export step already scored with the served graph are not scored again."""
    flags = {"avx2", "avx512_vnni"} if int8_cpu else {"avx2"}  # int8 candidates are built only with VNNI
    monkeypatch.setattr(hardware, "cpu_flags", lambda *_: frozenset(flags))
    run = make_trained_run(tmp_path / "run")
    frame = pd.read_parquet(run.split_file("test"))
    more = pd.concat([frame.assign(text=frame["text"] + f" (note {i})") for i in range(6)], ignore_index=True)
    more.to_parquet(run.split_file("test"))
    cfg = PipelineConfig.model_validate(
        {
            "data": {"labels": LABELS},
            "train": {"precision": "fp32"},
            "export": {"parity_rows": 32, "candidate_rows": 50, "runtime_timing_sentences": 8},
            "paths": {"store": str(tmp_path / "store")},
        }
    )
    exported = export(cfg, run)
    assert (exported.n, exported.of) == (32, len(more))  # parity: the same 32 seeded rows through both
    table = exported.runtime
    # the served graph's rows scored by export: the parity's (no int8 here), the candidates' sample, or all of them
    # when an int8 graph won the sample and was checked on the whole split
    expected = len(more) if "full_split" in table else 50 if int8_cpu else 32
    assert table["sample"]["rows"] == (50 if int8_cpu else 32)

    scored: list[int] = []
    real = OnnxPredictor.logits
    monkeypatch.setattr(OnnxPredictor, "logits", lambda self, texts, *a: scored.append(len(texts)) or real(self, texts))
    result = evaluate(cfg, run)
    info = read_json(run.predictions_info)
    assert info["rows_scored_by_export"] == expected and sum(scored) == len(more) - expected
    monkeypatch.setattr(OnnxPredictor, "logits", real)
    served = OnnxPredictor.from_dir(run.onnx_dir).logits(list(more["text"]))
    np.testing.assert_allclose(np.load(run.predictions), served, atol=1e-5)  # what is served is what was scored
    if info["runtime"] == "onnxruntime-fp32":
        reference = naive_logits(run.model_dir, list(more["text"]))
        np.testing.assert_allclose(served, reference, atol=1e-4)
    else:
        reference = served
    y_true = np.array([LABELS.index(label) for label in more["label"]])
    expected_metrics = flat_metrics(classification_metrics(y_true, reference.argmax(-1), LABELS))
    assert result.metrics == pytest.approx(expected_metrics, abs=1e-9) and result.n == len(more)
    assert result.runtime == info["runtime"] == read_json(run.onnx_dir / "tunepipe.json")["runtime"]
    assert result.precision == info["precision"] == ("int8" if "int8" in info["runtime"] else "fp32")

    # a re-exported graph (other bytes) or another split: the saved rows are not taken, every row is scored
    more.iloc[::-1].to_parquet(run.split_file("test"))
    scored.clear()
    monkeypatch.setattr(OnnxPredictor, "logits", lambda self, texts, *a: scored.append(len(texts)) or real(self, texts))
    evaluate(cfg, run)
    assert read_json(run.predictions_info)["rows_scored_by_export"] == 0 and sum(scored) == len(more)


def test_precision_is_the_runs_where_the_hardware_has_it(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"precision": "bf16"}))
    assert inference_settings("auto", train_summary=summary, capability=cpu(bf16=True)).precision == "bf16"
    assert inference_settings("auto", train_summary=summary, capability=cpu(bf16=False)).precision == "fp32"
    assert inference_settings("auto", capability=cpu(bf16=True)).precision == "fp32"  # no summary: auto, a CPU
    assert inference_settings("bf16", capability=cpu(bf16=True)).precision == "bf16"
    assert inference_settings("auto", capability=cpu(bf16=False)).precision == "fp32"
    assert inference_settings("bf16", capability=cpu(bf16=False)).precision == "fp32"  # emulated: not worth it
    settings = inference_settings("auto", num_threads=None, capability=cpu(cores=7))
    assert settings.threads == 7 and settings.device == "cpu" and settings.batch_size >= 16
    assert inference_settings("auto", num_threads=3, capability=cpu(cores=7)).threads == 3
