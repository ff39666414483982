"""The retraining flow: one dataset version, one config, the recipe's steps in order."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir, new_run
from pipeline_lib.roots import confine
from tasks import steps


@flow(name="retrain")
def retrain(
    config: str | None = None,
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """decide → validate → tokenize → train → evaluate → export → gate → register.

    `decide` skips the run when the champion was trained on this data version and config (`force` overrides);
    validate…export are served from the content-hash cache when their inputs are unchanged.
    """
    cfg = load_config(config, overrides)
    confine(cfg)
    decision = steps.decide(cfg, force)
    if not decision["retrain"]:
        get_run_logger().info("skipped: %s", decision["reason"])
        return {"skipped": True, "reason": decision["reason"], "decision": decision}
    run = RunDir(run_dir) if run_dir else new_run(cfg.paths.artifacts)
    get_run_logger().info("run directory: %s (%s)", run.root, decision["reason"])

    steps.validate(cfg, run)
    steps.tokenize(cfg, run)
    steps.train(cfg, run)
    steps.evaluate(cfg, run)
    steps.export(cfg, run)
    verdict = steps.gate(cfg, run)
    registered = steps.register(cfg, run)
    return {
        "skipped": False,
        "reason": decision["reason"],
        "decision": decision,
        "run_dir": str(run.root),
        "gate": verdict,
        "registered": registered,
    }
