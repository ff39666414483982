"""The runtime table `tunepipe lineage` prints: untimed candidates say why, tables of every age print."""

from __future__ import annotations

from pipeline_lib.registry.lineage import UNTIMED, runtime_lines, runtime_table

TABLE = {
    "chosen": "onnxruntime-fp32",
    "candidates": [
        {"runtime": "onnxruntime-fp32", "eligible": True, "timed": "full", "p50_ms_batch1": 4.2,
         "samples_per_s_batch32": 310.0},
        {"runtime": "onnxruntime-int8-dynamic", "eligible": True, "timed": "probe", "p50_ms_batch1": 9.9,
         "samples_per_s_batch32": 120.0},
        {"runtime": "onnxruntime-int8-static", "eligible": False, "agreement": 0.9},
    ],
    "references": [],
    "not_timed": {
        "onnxruntime-int8-dynamic": "clearly slower than the best on the 8-sentence probe at batch 1 and 32",
        "onnxruntime-int8-static": "over the metric budget or the agreement floor: it cannot be chosen",
        "pytorch references": "export.benchmark is off: a reference never changes the choice",
    },
}  # fmt: skip


def test_rows_say_why_they_were_not_timed():
    rows = {row["runtime"]: row for row in runtime_table(TABLE)["candidates"]}
    assert rows["onnxruntime-int8-static"]["untimed"].startswith("over the metric budget or the agreement floor")
    assert rows["onnxruntime-int8-dynamic"]["probe_only"].startswith("clearly slower")
    assert "untimed" not in rows["onnxruntime-fp32"] and "probe_only" not in rows["onnxruntime-fp32"]
    assert runtime_table(None) is None


def test_lines_print_an_untimed_candidate_and_each_reason_once():
    lines = runtime_lines(TABLE)
    assert lines[0] == "serving runtime: onnxruntime-fp32 (chosen by measurement)"
    static = next(line for line in lines if "int8-static" in line)
    assert "not timed: over the metric budget or the agreement floor" in static
    assert "4.20 ms @1" in lines[1] and "310.0/s @32  eligible" in lines[1]
    assert "timed on the probe only: clearly slower" in lines[2]
    assert sum("int8-static" in line for line in lines) == 1
    assert lines[-1].strip().startswith("pytorch references") and "benchmark is off" in lines[-1]


def test_a_table_without_reasons_still_prints():
    old = {"chosen": "onnxruntime-fp32", "candidates": [{"runtime": "onnxruntime-int8-static", "eligible": False}]}
    assert runtime_lines(old)[1].endswith(f"not timed: {UNTIMED}")


def test_lineage_on_a_fresh_store_answers_without_mlflow_log_lines(tmp_path):
    """A new store's first command prints its answer, not MLflow's "Creating initial MLflow database tables" INFO."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "flows.cli", "lineage", "nobody@champion"]
    command += ["--config", str(repo / "configs" / "default.yaml"), "--set", f"paths.store={tmp_path / 'store'}"]
    done = subprocess.run(command, cwd=tmp_path, env={**env, "PYTHONPATH": str(repo)}, capture_output=True, text=True)

    assert done.returncode == 1
    assert "nobody@champion: no such registered model or alias" in done.stderr + done.stdout
    assert "INFO mlflow" not in done.stderr + done.stdout, done.stderr
    assert (tmp_path / "store").is_dir()  # the store was created: the quiet answer is not a skipped connection
