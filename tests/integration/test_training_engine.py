"""Training engine through the real CLI and flow: DDP on CPU (gloo), kill + resume, LoRA and head-only runs, bf16 on
the CPU."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir
from pipeline_lib.registry import store

from .conftest import cli_sets, overrides

pytestmark = pytest.mark.integration
NAME = "engine-test"


def run_cli(*extra: str):
    result = CliRunner().invoke(app, ["run", "--force", *cli_sets(f"registry.model_name={NAME}", *extra)])
    assert result.exit_code == 0, result.output
    return result


def newest_run(workspace: Path) -> RunDir:
    return RunDir(max((workspace / "artifacts" / "runs").glob("*/"), key=lambda p: p.stat().st_mtime_ns))


def versions(workspace: Path) -> list:
    client = store.connect(load_config(None, overrides()))
    return client.search_model_versions(f"name='{NAME}'")


def test_two_process_ddp_on_cpu_registers_one_model_from_one_mlflow_run(in_workspace: Path):
    before = {str(v.version) for v in versions(in_workspace)}
    run_cli("train.num_processes=2")
    summary = json.loads(newest_run(in_workspace).train_summary.read_text())
    assert summary["world_size"] == 2
    new = [v for v in versions(in_workspace) if str(v.version) not in before]
    assert len(new) == 1
    client = store.connect(load_config(None, overrides()))
    runs = client.search_runs([client.get_experiment_by_name("tunepipe").experiment_id])
    assert sum(1 for r in runs if r.info.run_id == new[0].run_id) == 1
    assert len({r.info.run_id for r in runs}) == len(runs)


@pytest.mark.parametrize("strategy", [["train.lora.enabled=true", "train.lora.r=4"], ["train.freeze=head_only"]])
def test_lora_and_head_only_runs_export_and_register(in_workspace: Path, strategy: list[str]):
    before = len(versions(in_workspace))
    run_cli(*strategy)
    run = newest_run(in_workspace)
    summary = json.loads(run.train_summary.read_text())
    assert summary["trainable"]["strategy"] == ("lora" if "lora" in strategy[0] else "head_only")
    assert summary["trainable"]["fraction"] < 0.05
    export = json.loads(run.export_summary.read_text())
    assert export["agreement"] == 1.0 and export["max_abs_logit_diff"] < 1e-3
    assert len(versions(in_workspace)) == before + 1


def test_bf16_cpu_run_trains_exports_and_registers(in_workspace: Path, caplog: pytest.LogCaptureFixture):
    """`train.precision=bf16` on the CPU whatever `auto` picks here (where the CPU lacks bf16 hardware, torch
    emulates it: slower, same path, and the train step says so); the registered version's lineage says bf16 on cpu."""
    from pipeline_lib.hardware import detect
    from pipeline_lib.registry.lineage import lineage

    before = len(versions(in_workspace))
    # on the step's own logger: where its records go on from there depends on how Prefect set up logging
    train_log = logging.getLogger("pipeline_lib.steps.train")
    train_log.addHandler(caplog.handler)
    try:
        run_cli("train.precision=bf16", "train.max_steps=2", "train.batch_size=4")
    finally:
        train_log.removeHandler(caplog.handler)
    told = [r.getMessage() for r in caplog.records if "bf16 is emulated there" in r.getMessage()]
    assert bool(told) == (not detect().bf16)  # only where bf16 is emulated, naming the option that fixes it
    assert all("train.precision=auto" in message for message in told)
    summary = json.loads(newest_run(in_workspace).train_summary.read_text())
    assert (summary["precision"], summary["device"]) == ("bf16", "cpu")
    registered = versions(in_workspace)
    assert len(registered) == before + 1
    newest = max(int(v.version) for v in registered)
    info = lineage(load_config(None, overrides()), f"{NAME}/{newest}")
    assert (info["precision"], info["device"]) == ("bf16", "cpu")
    assert json.loads(newest_run(in_workspace).export_summary.read_text())["agreement"] == 1.0


def test_killed_training_resumes_to_the_same_step_count_and_registers(in_workspace: Path):
    steps = 10
    args = [
        arg
        for item in overrides(f"registry.model_name={NAME}", f"train.max_steps={steps}", "train.save_steps=2")
        for arg in ("--set", item)
    ]
    cli = [sys.executable, "-m", "flows.cli", "run", "--force", *args]
    proc = subprocess.Popen(
        cli,
        cwd=in_workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ},
    )
    deadline = time.time() + 240
    checkpoint = None
    while time.time() < deadline and proc.poll() is None:
        runs = list((in_workspace / "artifacts" / "runs").glob("*/train/checkpoints/checkpoint-4"))
        if runs and (runs[0] / "trainer_state.json").is_file():
            checkpoint = runs[0]
            break
        time.sleep(0.2)
    assert checkpoint is not None, "training never wrote checkpoint-4"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunDir(checkpoint.parents[2])
    assert not run.registration.exists() and not run.train_summary.exists()

    before = len(versions(in_workspace))
    result = CliRunner().invoke(app, ["run", "--resume", *args])
    assert result.exit_code == 0, result.output
    summary = json.loads(run.train_summary.read_text())
    assert summary["global_step"] == steps
    assert json.loads(run.registration.read_text())["name"] == NAME
    assert len(versions(in_workspace)) == before + 1


def test_same_seed_gives_identical_training_on_cpu(in_workspace: Path, tmp_path: Path):
    from pipeline_lib.steps import run_step

    cfg = load_config(None, overrides(f"paths.store={tmp_path / 'store'}", "train.precision=fp32"))
    outcomes = []
    for name in ("a", "b"):
        run = RunDir(tmp_path / name)
        for step in ("validate", "tokenize", "train", "evaluate"):
            run_step(step, cfg, run)
        history = [
            {k: v for k, v in row.items() if "runtime" not in k and "per_second" not in k}  # timings differ
            for row in json.loads(run.train_history.read_text())
        ]
        outcomes.append((history, json.loads(run.metrics.read_text())))
    assert outcomes[0] == outcomes[1]
