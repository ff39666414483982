"""The retraining flow: one dataset version, one config, the recipe's steps in order."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir, new_run
from tasks import steps


@flow(name="retrain")
def retrain(
    config: str | None = None, overrides: list[str] | None = None, run_dir: str | None = None
) -> dict[str, Any]:
    """validate → tokenize → train → evaluate → export → gate → register."""
    cfg = load_config(config, overrides)
    run = RunDir(run_dir) if run_dir else new_run(cfg.paths.artifacts)
    get_run_logger().info("run directory: %s", run.root)

    steps.validate(cfg, run)
    steps.tokenize(cfg, run)
    steps.train(cfg, run)
    steps.evaluate(cfg, run)
    steps.export(cfg, run)
    verdict = steps.gate(cfg, run)
    registered = steps.register(cfg, run)
    return {"run_dir": str(run.root), "gate": verdict, "registered": registered}
