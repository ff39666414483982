"""OnnxPredictor and the MLflow pyfunc against PyTorch, on a freshly exported tiny model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.pyfunc import PythonModelContext

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir
from pipeline_lib.runtime.onnx_export import load_trained
from pipeline_lib.runtime.predictor import OnnxPredictor, onnx_providers
from pipeline_lib.runtime.pyfunc import TunepipePyfunc, pyfunc_log_kwargs
from pipeline_lib.steps.export import export
from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source

LABELS = ["negative", "neutral", "positive"]
TEXTS = [
    "Profit fell.",
    "Net sales rose 12 percent to EUR 94.8 mn, and the outlook for the rest of the year was raised.",
    "The company is based in Oulu.",
    "Shares plunged after the chief executive resigned unexpectedly amid an accounting probe "
    "that may force the group to restate three years of results and renegotiate its loans.",
    "Dividend up.",
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with the default encoder and a fresh seeded 3-label head, exported by the export step."""
    run = RunDir(tmp_path_factory.mktemp("inference") / "run")
    source = resolve_model_source("default")
    torch.manual_seed(1)
    load_classifier(source, LABELS).save_pretrained(run.model_dir)
    load_tokenizer(source).save_pretrained(run.model_dir)
    run.split_file("test").parent.mkdir(parents=True)
    labels = ["negative", "positive", "neutral", "negative", "positive"]
    pd.DataFrame({"text": TEXTS, "label": labels}).to_parquet(run.split_file("test"))
    export(
        PipelineConfig.model_validate({"data": {"labels": LABELS}, "export": {"select_runtime": False}}), run
    )  # the fp32 graph only
    return run.onnx_dir


@pytest.fixture(scope="module")
def torch_logits(onnx_dir: Path) -> np.ndarray:
    """PyTorch logits for TEXTS, one text at a time (no padding at all)."""
    model, tokenizer = load_trained(onnx_dir.parent / "model", "sequence_classification")
    with torch.inference_mode():
        return np.concatenate([model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in TEXTS])


@pytest.fixture(scope="module")
def predictor(onnx_dir: Path) -> OnnxPredictor:
    return OnnxPredictor.from_dir(onnx_dir, num_threads=2)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_logits_match_torch(predictor: OnnxPredictor, torch_logits: np.ndarray, batch_size: int) -> None:
    logits = predictor.logits(TEXTS, batch_size=batch_size)
    assert logits.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(logits, torch_logits, atol=1e-4)
    assert (logits.argmax(-1) == torch_logits.argmax(-1)).all()


def test_one_text_takes_the_batch_one_path_with_the_same_logits(
    predictor: OnnxPredictor, torch_logits: np.ndarray
) -> None:
    for i, text in enumerate([*TEXTS, TEXTS[0]]):  # the repeated length reuses the input arrays
        single = predictor.logits([text])
        np.testing.assert_allclose(single[0], torch_logits[i % len(TEXTS)], atol=1e-4)
    assert len(predictor._single) == 1


def test_batches_run_in_length_groups_and_come_back_in_order(
    predictor: OnnxPredictor, torch_logits: np.ndarray
) -> None:
    order = np.random.default_rng(0).permutation(len(TEXTS) * 4) % len(TEXTS)  # 20 texts: 3 groups of <= 8
    texts = [TEXTS[i] for i in order]
    calls = []
    run = predictor.run
    predictor.run = lambda features: calls.append(features["input_ids"].shape) or run(features)
    try:
        logits = predictor.logits(texts, batch_size=len(texts))
    finally:
        del predictor.run
    np.testing.assert_allclose(logits, torch_logits[order], atol=1e-4)
    assert [shape[0] for shape in calls] == [8, 8, 4]
    assert [shape[1] for shape in calls] == sorted(shape[1] for shape in calls)  # shortest group first
    assert calls[0][1] < calls[-1][1]  # the short texts were not padded to the longest one


def test_many_texts_are_sorted_as_a_whole_and_run_batch_size_at_a_time(
    predictor: OnnxPredictor, torch_logits: np.ndarray
) -> None:
    order = np.random.default_rng(1).permutation(len(TEXTS) * 6) % len(TEXTS)  # 30 texts, more than a batch
    texts = [TEXTS[i] for i in order]
    calls = []
    run = predictor.run
    predictor.run = lambda features: calls.append(features["input_ids"].shape) or run(features)
    try:
        logits = predictor.logits(texts, batch_size=6)
    finally:
        del predictor.run
    np.testing.assert_allclose(logits, torch_logits[order], atol=1e-4)
    assert [shape[0] for shape in calls] == [6] * 5
    # sorted across the whole list: each run holds copies of one text, so nothing is padded
    lengths = sorted(len(predictor.encode_unpadded([t])["input_ids"][0]) for t in TEXTS)
    assert [shape[1] for shape in calls] == lengths


def test_unpadded_encoding_equals_the_tokenizers(predictor: OnnxPredictor) -> None:
    texts = [*TEXTS, "revenue " * 300, "Ünïcödé façade – naïve €5"]  # one is truncated at max_length
    wrapper = predictor.tokenizer(texts, truncation=True, max_length=predictor.max_length)
    fast = predictor.encode_unpadded(texts)
    assert set(fast) == set(predictor.input_names)
    for name in predictor.input_names:
        assert fast[name] == wrapper[name]
    assert len(fast["input_ids"][-2]) == predictor.max_length


@pytest.mark.parametrize("batch_size", [1, 5])
def test_predict_labels_and_probabilities(predictor: OnnxPredictor, torch_logits: np.ndarray, batch_size: int) -> None:
    rows = predictor.predict(TEXTS, batch_size=batch_size)
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == [LABELS[i] for i in torch_logits.argmax(-1)]
    for row in rows:
        assert list(row["probabilities"]) == LABELS
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValueError, "empty"),
        ("a single string", TypeError, "not a single string"),
        (["fine", 3], TypeError, r"texts\[1\] is int"),
        (["fine", None], TypeError, r"texts\[1\] is NoneType"),
        (42, TypeError, "list of strings"),
    ],
)
def test_bad_texts_are_refused(predictor: OnnxPredictor, texts: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        predictor.predict(texts)


def test_missing_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tunepipe\.json"):
        OnnxPredictor.from_dir(tmp_path)


def test_other_graph_and_cpu_only(onnx_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.int8\.onnx is missing"):
        OnnxPredictor.from_dir(onnx_dir, graph="model.int8.onnx")
    cpu = OnnxPredictor.from_dir(onnx_dir, num_threads=1, cpu_only=True)
    assert cpu.session.get_providers() == ["CPUExecutionProvider"]


def test_cpu_provider_always_offered() -> None:
    providers = onnx_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert providers[0] in ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_pyfunc_round_trip(
    onnx_dir: Path, predictor: OnnxPredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_model prepends the model's code folder
    saved = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(path=str(saved), **pyfunc_log_kwargs(onnx_dir))
    model = mlflow.pyfunc.load_model(str(saved))

    out = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = predictor.predict(TEXTS)
    assert list(out.columns) == ["label", "probabilities", *(f"p_{label}" for label in LABELS)]
    assert out["label"].tolist() == [r["label"] for r in expected]
    assert out["probabilities"].tolist() == [r["probabilities"] for r in expected]
    assert out["p_positive"].tolist() == [r["probabilities"]["positive"] for r in expected]
    single = model.predict(pd.DataFrame({"text": TEXTS[:1]}), params={"batch_size": 1})
    assert single["label"].tolist() == [expected[0]["label"]]

    requirements = (saved / "requirements.txt").read_text().split()
    assert any(r.startswith("onnxruntime") for r in requirements)
    assert not any(r.startswith("torch") for r in requirements)
    assert (saved / "code" / "pipeline_lib" / "runtime" / "predictor.py").is_file()
    flavor = yaml.safe_load((saved / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("pyfunc_model.py")  # logged as code (models-from-code)
    assert "python_model" not in flavor
    assert not [p for p in saved.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    assert model.metadata.get_input_schema().input_names() == ["text"]


def test_python_model_accepts_a_plain_list(onnx_dir: Path, predictor: OnnxPredictor) -> None:
    python_model = TunepipePyfunc()
    context = PythonModelContext(artifacts={"onnx": str(onnx_dir)}, model_config={})
    python_model.load_context(context)
    out = python_model.predict(context, TEXTS[:2])
    assert out["label"].tolist() == [r["label"] for r in predictor.predict(TEXTS[:2])]


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, pipeline_lib.runtime.predictor, pipeline_lib.runtime.pyfunc; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
