"""Thin Prefect tasks of the hyper-parameter search (`pipeline_lib.commands.tune`): never cached, since a study
lives in its Optuna storage and each call continues it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline_lib.config import PipelineConfig


def _search_module() -> ModuleType:
    """`pipeline_lib.commands.tune`, imported when a tune task runs: it pulls in the registry, MLflow and
    scikit-learn, which the retrain flow (importing this module for `tune.retune_every`) must not pay for at start."""
    from pipeline_lib.commands import tune

    return tune


@task(name="tune-prepare", cache_policy=NO_CACHE)
def prepare(cfg: PipelineConfig) -> dict[str, Any]:
    """Validate and tokenize once; create or continue the study and its MLflow run."""
    info = _search_module().prepare(cfg)
    get_run_logger().info("[tune] study %s, base %s, trials so far %s", info["study"], info["base"], info["trials"])
    return info


@task(name="tune-search", cache_policy=NO_CACHE)
def search(cfg: PipelineConfig, worker: int = 0, workers: int = 1) -> dict[str, int]:
    """One worker's trials (several such tasks, each in its own process, share the study when tune.parallel > 1)."""
    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()
    counts = _search_module().search(cfg, worker, workers)
    get_run_logger().info("[tune] worker %d done: %s", worker, counts)
    return counts


@task(name="tune-finish", cache_policy=NO_CACHE)
def finish(cfg: PipelineConfig, base_files: list[str]) -> dict[str, Any]:
    result = _search_module().finish(cfg, base_files).to_dict()
    get_run_logger().info(
        "[tune] best trial %d: validation %s %.4f; overlay %s",
        result["best_trial"],
        result["metric"],
        result["best_value"],
        result["overlay"],
    )
    return result


@task(name="retune-decision", cache_policy=NO_CACHE)
def retune_decision(cfg: PipelineConfig) -> dict[str, Any]:
    decision = _search_module().retune_decision(cfg).to_dict()
    get_run_logger().info("[retune] %s: %s", "search" if decision["retune"] else "no search", decision["reason"])
    return decision
