"""Thin Prefect tasks: each runs one `pipeline_lib` step and returns its small result dict.

validate → export are cached on content hashes (`pipeline_lib.step_cache`: data, upstream files, tokenizer,
config fields, code version), never on the run path: a step served from cache gets its stored outputs copied
into this run's directory, so the next step finds its files either way. Gate and register always run.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir
from pipeline_lib.steps import cache, run_step, summarize


def _fingerprint_key(context: Any, parameters: dict[str, Any]) -> str | None:
    fingerprint = parameters.get("fingerprint")
    return fingerprint["key"] if fingerprint else None


CONTENT_HASH = CachePolicy.from_cache_key_fn(_fingerprint_key)


def _execute(name: str, cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    start = time.perf_counter()
    result = run_step(name, cfg, run).to_dict()
    if fingerprint:
        cache.StepStore(cfg).save(cache.Fingerprint(**fingerprint), run)
    get_run_logger().info("[%s] %.1fs  %s", name, time.perf_counter() - start, summarize(name, result))
    return result


@task(name="validate", cache_policy=CONTENT_HASH)
def validate_task(cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return _execute("validate", cfg, run, fingerprint)


@task(name="tokenize", cache_policy=CONTENT_HASH)
def tokenize_task(cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return _execute("tokenize", cfg, run, fingerprint)


@task(name="train", cache_policy=CONTENT_HASH)
def train_task(cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return _execute("train", cfg, run, fingerprint)


@task(name="evaluate", cache_policy=CONTENT_HASH)
def evaluate_task(cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return _execute("evaluate", cfg, run, fingerprint)


@task(name="export", cache_policy=CONTENT_HASH)
def export_task(cfg: PipelineConfig, run: RunDir, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    return _execute("export", cfg, run, fingerprint)


@task(name="gate", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def gate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _execute("gate", cfg, run, None)


def _not_given_up(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed register task, unless it already retried an unreachable server to its limit."""
    from pipeline_lib.registry.errors import RegistryUnavailable

    return not isinstance(state.result(raise_on_failure=False), RegistryUnavailable)


# register retries an unreachable tracking server itself (registry.retries), rolling back each interrupted attempt
@task(name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=_not_given_up)
def register(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _execute("register", cfg, run, None)


@task(name="decide", cache_policy=NO_CACHE)
def decide(cfg: PipelineConfig, force: bool = False) -> dict[str, Any]:
    """Retrain or skip: the data's DVC hash and the config hash against the champion's (and challenger's) tags."""
    from pipeline_lib.steps.decide import retrain_decision

    decision = retrain_decision(cfg, force=force).to_dict()
    get_run_logger().info("[decide] %s: %s", "retrain" if decision["retrain"] else "skip", decision["reason"])
    return decision


CACHED_TASKS = {
    "validate": validate_task,
    "tokenize": tokenize_task,
    "train": train_task,
    "evaluate": evaluate_task,
    "export": export_task,
}


def cached(name: str, cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    """Run a cacheable step: served from the Prefect cache (outputs restored into `run`) or run, and say why."""
    logger = get_run_logger()
    store = cache.StepStore(cfg)
    fp = cache.fingerprint(name, cfg, run)
    if fp is None:
        logger.info("[%s] runs uncached: an input is missing", name)
        return CACHED_TASKS[name](cfg, run, None)
    storage = cfg.paths.cache_dir / "prefect"
    configured = CACHED_TASKS[name].with_options(
        cache_policy=CONTENT_HASH.configure(key_storage=storage / "keys"),
        result_storage=storage / "results",
    )
    last = store.last(name)
    state = configured(cfg, run, fp.to_dict(), return_state=True)
    result = state.result()
    if state.name != "Cached":
        logger.info("[%s] ran (key %s): %s", name, fp.key[:10], cache.explain_miss(fp, last))
        return result
    if store.restore(fp, run):
        logger.info("[%s] served from cache (key %s): unchanged %s", name, fp.key[:10], cache.describe(fp))
        return result
    logger.info("[%s] cache record %s has no stored outputs: running", name, fp.key[:10])
    return configured.with_options(refresh_cache=True)(cfg, run, fp.to_dict())


def validate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return cached("validate", cfg, run)


def tokenize(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return cached("tokenize", cfg, run)


def train(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return cached("train", cfg, run)


def evaluate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return cached("evaluate", cfg, run)


def export(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return cached("export", cfg, run)
