"""Data-parallel training: the train step relaunches itself under torchrun (DDP) when asked for N processes.

One process per device (or per CPU share with gloo); Trainer/accelerate read torchrun's environment. Only rank 0
writes the run directory, so the register step (and MLflow) sees one model and one run.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir


def in_worker() -> bool:
    """True inside a torchrun-launched process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def torchrun_command(cfg: PipelineConfig, run: RunDir, config_file: str) -> list[str]:
    """`python -m torch.distributed.run ... -m pipeline_lib.steps.train CONFIG RUN_DIR`."""
    t = cfg.train
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={t.num_processes}"]
    if t.nnodes > 1:
        if not t.rdzv_endpoint:
            raise ValueError("train.nnodes > 1 needs train.rdzv_endpoint (host:port of node 0)")
        command += [f"--nnodes={t.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={t.rdzv_endpoint}"]
        command += [f"--rdzv_id={run.root.name}"]
    else:
        command += ["--standalone"]
    return [*command, "-m", "pipeline_lib.steps.train", config_file, str(run.root)]


def launch(cfg: PipelineConfig, run: RunDir) -> None:
    """Run the train step in `num_processes` torchrun workers and wait; raise with the workers' output on failure."""
    config_file = run.root / "train" / "launch_config.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(cfg.to_yaml())
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(max(1, (cfg.train.num_threads or os.cpu_count() or 1) // cfg.train.num_processes)),
    }
    done = subprocess.run(torchrun_command(cfg, run, str(config_file)), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"distributed training failed (exit {done.returncode}):\n{tail}")
