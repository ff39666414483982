"""The hyper-parameter search flow `tune`, beside `retrain`: prepare (validate + tokenize once, the study) → search
→ finish (the best trial's overlay `configs/tuned/<study>.yaml`).

Trials run in this process by default. With `tune.parallel: N` they fan out as N Prefect tasks, each in its own
worker process (Prefect's ProcessPoolTaskRunner), all drawing from and reporting to the one study in its RDB
storage, each with its share of the CPU cores; across machines, start `tunepipe tune` on each against a shared
`TUNEPIPE_OPTUNA_STORAGE` (PostgreSQL) instead. A trial's own training stays in one process (no torchrun per
trial: its pruning callback runs in-process).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from pipeline_lib.config import PipelineConfig, config_files, load_config
from pipeline_lib.roots import confine
from tasks import tune as tasks


@flow(name="tune-workers")
def workers(cfg: PipelineConfig, count: int) -> list[dict[str, int]]:
    """`count` search tasks at once (run with a process-pool task runner of `count` workers)."""
    futures = [tasks.search.submit(cfg, worker, count) for worker in range(count)]
    return [future.result() for future in futures]


@flow(name="tune")
def tune(config: str | list[str] | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Search `tune.space` on the validation split (`tune.*`: trials, timeout, pruner, storage, parallel) and write
    the best trial's params as an overlay for `tunepipe run --config BASE --config OVERLAY`."""
    cfg = load_config(config, overrides)
    confine(cfg)
    info = tasks.prepare(cfg)
    parallel = cfg.tune.parallel
    if parallel > 1:
        from prefect.task_runners import ProcessPoolTaskRunner

        get_run_logger().info("study %s: %d trials at once, in worker processes", info["study"], parallel)
        workers.with_options(task_runner=ProcessPoolTaskRunner(max_workers=parallel))(cfg, parallel)
    else:
        tasks.search(cfg)
    return tasks.finish(cfg, [str(path) for path in config_files(config)])
