"""The serving runtime is chosen by measurement and is what `OnnxPredictor.from_dir` loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.config import PipelineConfig
from pipeline_lib.runtime import selection
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.steps.export import export
from tests.unit.steps.test_export import make_trained_run


@pytest.mark.parametrize(
    ("budget", "bf16_flags", "benchmark"), [(0.0, ("avx512_bf16",), False), (1.0, (), False), (0.0, (), True)]
)
def test_export_times_what_can_win_and_records_the_fastest_eligible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: float, bf16_flags: tuple[str, ...], benchmark: bool
):
    monkeypatch.setattr(selection, "cpu_bf16_flags", lambda: bf16_flags)  # the CPU's bf16 hardware, overridden
    cfg = PipelineConfig.model_validate(
        {
            "data": {"labels": ["negative", "neutral", "positive"]},
            "export": {
                "select_runtime": True,
                "runtime_metric_budget": budget,
                "runtime_timing_sentences": 8,
                "benchmark": benchmark,
            },
            "paths": {"store": str(tmp_path / "store")},
        }
    )
    run = make_trained_run(tmp_path)
    table = export(cfg, run).runtime
    rows = {row["runtime"]: row for row in table["candidates"]}
    assert set(rows) == {"onnxruntime-fp32", "onnxruntime-int8-dynamic", "onnxruntime-int8-static"}
    if benchmark:  # a benchmark times every candidate in full, and PyTorch as references (bf16 only on bf16 hardware)
        assert {ref["runtime"] for ref in table["references"]} == {"pytorch-fp32"}
        assert "no bf16 hardware" in table["not_timed"]["pytorch-bf16"]
        assert all(row["timed"] == "full" for row in rows.values())
    else:  # the pipeline times only what can change the choice, and says what it left out
        assert table["references"] == [] and "never changes the choice" in table["not_timed"]["pytorch references"]
    for row in rows.values():
        floor = cfg.export.runtime_min_agreement
        assert row["eligible"] == (row["metric"] >= table["metric_torch"] - budget and row["agreement"] >= floor)
        if not row["eligible"] and not benchmark:  # it cannot win: never timed, and the table says why
            assert "timed" not in row and "metric budget" in table["not_timed"][row["runtime"]]
        elif row["eligible"]:
            assert row["timed"] in ("full", "probe") and row["p50_ms_batch1"] > 0 and row["samples_per_s_batch32"] > 0
            assert (row["timed"] == "probe") == (row["runtime"] in table["not_timed"])
    for row in table["references"]:
        assert row["p50_ms_batch1"] > 0 and row["samples_per_s_batch32"] > 0
    full = [row for row in rows.values() if row.get("timed") == "full" and row["eligible"]]
    assert table["chosen"] == min(full, key=lambda r: (r["p50_ms_batch1"], -r["samples_per_s_batch32"]))["runtime"]

    meta = json.loads((run.onnx_dir / "tunepipe.json").read_text())
    assert meta["graph"] == rows[table["chosen"]]["graph"] and meta["runtime"] == table["chosen"]
    predictor = OnnxPredictor.from_dir(run.onnx_dir)
    assert Path(predictor.session._model_path).name == meta["graph"]
    # the served graph and the fp32 reference stay; quantized graphs that lost are not shipped
    assert sorted(p.name for p in run.onnx_dir.glob("*.onnx")) == sorted({"model.onnx", meta["graph"]})

    # the same weights exported again on this machine: the choice is reused, nothing is quantized or timed again
    monkeypatch.setattr(selection, "select", lambda *a, **k: pytest.fail("the runtime was timed again"))
    again = export(cfg, run).runtime
    assert again["chosen"] == table["chosen"] and "measured before" in again["reused"]
    assert json.loads((run.onnx_dir / "tunepipe.json").read_text())["graph"] == meta["graph"]
    assert sorted(p.name for p in run.onnx_dir.glob("*.onnx")) == sorted({"model.onnx", meta["graph"]})


def test_static_int8_is_calibrated_qdq_and_close_to_fp32(tmp_path: Path):
    import numpy as np
    import onnx

    from pipeline_lib.runtime.quantization import quantize_static_int8
    from pipeline_lib.steps.export import calibration_batches

    cfg = PipelineConfig.model_validate(
        {"data": {"labels": ["negative", "neutral", "positive"]}, "export": {"select_runtime": False}}
    )
    run = make_trained_run(tmp_path)
    export(cfg, run)
    fp32 = OnnxPredictor.from_dir(run.onnx_dir, cpu_only=True)
    batches = calibration_batches(run, fp32, n=5, seed=0)
    assert sum(len(b["input_ids"]) for b in batches) == 5  # a sample of the train split, encoded for the graph

    target = quantize_static_int8(run.onnx_dir / "model.onnx", run.onnx_dir / "model.int8-static.onnx", batches)
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # activations quantized too, not only weights
    static = OnnxPredictor.from_dir(run.onnx_dir, cpu_only=True, graph=target.name)
    texts = ["Profit rose sharply.", "Sales fell by a third.", "The meeting is on Tuesday."]
    reference, quantized = fp32.logits(texts), static.logits(texts)
    assert (
        np.abs(reference - quantized).max() < 0.5
        and target.stat().st_size < 0.8 * (run.onnx_dir / "model.onnx").stat().st_size
    )
    with pytest.raises(ValueError, match="calibration batch"):
        quantize_static_int8(run.onnx_dir / "model.onnx", tmp_path / "x.onnx", [])
