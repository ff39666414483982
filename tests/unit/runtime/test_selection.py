"""The serving runtime is chosen by measurement and is what `OnnxPredictor.from_dir` loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline_lib import hardware
from pipeline_lib.config import PipelineConfig
from pipeline_lib.runtime import selection
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.steps.export import export
from tests.unit.steps.test_export import TEST_ROWS, make_trained_run


@pytest.mark.parametrize(
    ("budget", "bf16_flags", "benchmark"), [(0.0, ("avx512_bf16",), False), (1.0, (), False), (0.0, (), True)]
)
def test_export_times_what_can_win_and_records_the_fastest_eligible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: float, bf16_flags: tuple[str, ...], benchmark: bool
):
    monkeypatch.setattr(selection, "cpu_bf16_flags", lambda: bf16_flags)  # the CPU's bf16 hardware, overridden
    monkeypatch.setattr(hardware, "cpu_flags", lambda *_: frozenset({"avx2", "avx512_vnni"}))  # int8 can win here
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
    # static int8 is built only where dynamic int8 can serve (static was never the more accurate), or for a benchmark
    static = rows["onnxruntime-int8-dynamic"]["eligible"] or benchmark
    assert set(rows) == {"onnxruntime-fp32", "onnxruntime-int8-dynamic", *(["onnxruntime-int8-static"] * static)}
    if not static:
        assert table["not_timed"]["onnxruntime-int8-static"] == selection.STATIC_NEEDS_DYNAMIC
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
    if full:
        fastest = min(full, key=lambda r: (r["p50_ms_batch1"], -r["samples_per_s_batch32"]))["runtime"]
        assert table["chosen"] == fastest or not table["full_split"]["passed"]
    else:  # one eligible candidate: nothing to choose between, the probe is its timing
        assert [row["runtime"] for row in rows.values() if row["eligible"]] == [table["chosen"]]
    assert table["sample"]["rows"] == len(TEST_ROWS)
    if "full_split" in table:  # an int8 graph won on the sample: checked on every row against fp32, else fp32 served
        check = table["full_split"]
        assert check["rows"] == len(TEST_ROWS) and check["runtime"] != "onnxruntime-fp32"
        assert table["chosen"] == (check["runtime"] if check["passed"] else "onnxruntime-fp32")
    else:  # the fp32 graph is the reference: evaluate scores every row with it, nothing to check twice
        assert table["chosen"] == "onnxruntime-fp32"

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


@pytest.mark.parametrize(
    ("flags", "builds_int8"),
    [
        ({"avx", "avx2", "fma"}, False),  # AVX2 only: int8 MatMul widens to 16 bits, no faster than fp32
        ({"avx2", "avx512f", "avx512bw"}, False),  # AVX-512 without VNNI
        ({"avx2", "avx512f", "avx512_vnni"}, True),
        ({"avx2", "avx_vnni"}, True),
        ({"avx512f", "amx_tile", "amx_int8"}, True),
        ({"asimd", "asimddp"}, True),  # Arm SDOT
        (set(), False),
    ],
)
def test_int8_is_built_only_with_int8_dot_product_instructions(flags: set[str], builds_int8: bool) -> None:
    reason = selection.int8_skip_reason(frozenset(flags))
    assert (reason is None) == builds_int8
    if reason:
        assert "no int8 dot-product instructions" in reason and "avx512_vnni" in reason


def test_candidate_sample_is_seeded_stable_and_whole_when_small() -> None:
    first = selection.candidate_sample(5000, 1000, seed=42)
    assert len(first) == len(set(first.tolist())) == 1000 and (first == np.sort(first)).all()
    assert first.min() >= 0 and first.max() < 5000
    np.testing.assert_array_equal(first, selection.candidate_sample(5000, 1000, seed=42))  # same rows every time
    assert not np.array_equal(first, selection.candidate_sample(5000, 1000, seed=43))
    np.testing.assert_array_equal(selection.candidate_sample(300, 1000, seed=42), np.arange(300))
    # samples of one split and seed are nested: the parity rows lie inside the candidates', scored once
    parity = selection.candidate_sample(5000, 256, seed=42)
    assert len(parity) == 256 and set(parity) <= set(first)


def test_without_int8_the_fp32_graph_is_judged_on_the_parity_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AVX2-only CPU: no int8 graph is built, fp32 is the only candidate (probe-timed), judged on the parity's
    seeded sample with the parity's own logits; no second pass over the split (evaluate scores it)."""
    monkeypatch.setattr(hardware, "cpu_flags", lambda *_: frozenset({"avx", "avx2"}))
    cfg = PipelineConfig.model_validate(
        {
            "data": {"labels": ["negative", "neutral", "positive"]},
            "export": {"select_runtime": True, "parity_rows": 40, "runtime_timing_sentences": 8},
            "paths": {"store": str(tmp_path / "store")},
        }
    )
    run = make_trained_run(tmp_path / "run")
    rows = [(f"{text} (item {i})", label) for i in range(5) for text, label in TEST_ROWS]  # 60 test rows
    pd.DataFrame(rows, columns=["text", "label"]).to_parquet(run.split_file("test"))
    seen: list[list[str]] = []
    real_select = selection.select

    def spy(cfg_: PipelineConfig, folder: Path, candidates: dict, texts: list[str], *args: Any, **kw: Any) -> dict:
        seen.append(list(texts))
        return real_select(cfg_, folder, candidates, texts, *args, **kw)

    monkeypatch.setattr(selection, "select", spy)
    result = export(cfg, run)
    table = result.runtime
    expected = [rows[i][0] for i in selection.candidate_sample(60, 40, cfg.train.seed)]
    assert seen == [expected]  # the candidate was judged and timed on the parity's fixed sample
    assert table["sample"] == {"rows": 40, "of": 60, "seed": cfg.train.seed} and table["reference"] == "pytorch"
    assert [row["runtime"] for row in table["candidates"]] == ["onnxruntime-fp32"]
    assert table["candidates"][0]["timed"] == "probe" and table["chosen"] == "onnxruntime-fp32"
    for name in selection.INT8_CANDIDATES:
        assert "no int8 dot-product instructions" in table["not_timed"][name]
    assert sorted(p.name for p in run.onnx_dir.glob("*.onnx")) == ["model.onnx"]  # nothing quantized
    assert "full_split" not in table and (result.n, result.of) == (40, 60)
    assert table["candidates"][0]["metric"] == round(result.metric_onnx, 6)  # the parity's figure, not a new pass
    assert table["candidates"][0]["agreement"] == round(result.agreement, 6)
