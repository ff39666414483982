"""The retraining flow: one dataset version, one config, the recipe's steps in order."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.layout import RunDir, new_run
from pipeline_lib.roots import confine
from tasks import steps
from tasks import tune as tune_tasks


@flow(name="retrain")
def retrain(
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """decide → validate → tokenize → train → export → evaluate → gate → register.

    `decide` skips the run when the champion was trained on this data version and config (`force` overrides);
    validate…export are served from the content-hash cache when their inputs are unchanged. With
    `tune.retune_every: K`, the best trial of the latest study is trained, and a new search runs first every K new
    data versions (`commands.tune.retune_decision`).
    """
    cfg = load_config(config, overrides)
    confine(cfg)
    retune = None
    if cfg.tune.retune_every:
        cfg, retune = _tuned(cfg, config, overrides)
    decision = steps.decide(cfg, force)
    if not decision["retrain"]:
        get_run_logger().info("skipped: %s", decision["reason"])
        return {"skipped": True, "reason": decision["reason"], "decision": decision, "retune": retune}
    run = RunDir(run_dir) if run_dir else new_run(cfg.paths.artifacts)
    get_run_logger().info("run directory: %s (%s)", run.root, decision["reason"])

    steps.validate(cfg, run)
    steps.tokenize(cfg, run)
    steps.train(cfg, run)
    steps.export(cfg, run)
    steps.evaluate(cfg, run)
    verdict = steps.gate(cfg, run)
    registered = steps.register(cfg, run)
    return {
        "skipped": False,
        "reason": decision["reason"],
        "decision": decision,
        "run_dir": str(run.root),
        "gate": verdict,
        "registered": registered,
        "retune": retune,
    }


def _tuned(
    cfg: PipelineConfig, config: str | list[str] | None, overrides: list[str] | None
) -> tuple[PipelineConfig, dict[str, Any]]:
    """The config with the best trial of the study due now: a new search (the `tune` flow) when retune_every data
    versions came in since the last one, else the last study's."""
    from flows.tune import tune
    from pipeline_lib.commands.tune import tuned

    plan = tune_tasks.retune_decision(cfg)
    if plan["retune"]:
        tune(config, [*(overrides or []), f"tune.study={plan['study']}"])
    return tuned(cfg, plan["study"]), plan
