"""Thin Prefect tasks of the `score` flow (`pipeline_lib.scoring.inbox`): never cached, since each run looks at the
registry and the inbox as they are now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline_lib.config import PipelineConfig


@task(name="resolve-models", cache_policy=NO_CACHE)
def resolve_models(cfg: PipelineConfig, references: list[str]) -> list[dict[str, Any]]:
    """The version each reference names now: a promotion takes effect on the next run."""
    from pipeline_lib.scoring.inbox import resolved

    models = resolved(cfg, references)
    for model in models:
        get_run_logger().info("[score] %s is %s v%s", model["reference"], model["name"], model["version"])
    return models


@task(name="new-files", cache_policy=NO_CACHE)
def new_files(inbox: str, output: str) -> list[dict[str, str]]:
    from pipeline_lib.scoring.inbox import new_files as pending

    found = pending(Path(inbox), Path(output))
    get_run_logger().info("[score] %d new file(s) in %s", len(found), inbox)
    return found


@task(name="score-files", cache_policy=NO_CACHE)
def score_files(
    cfg: PipelineConfig, versions: list[str], files: list[str], output: str, options: dict[str, Any]
) -> dict[str, Any]:
    from pipeline_lib.scoring.engine import Options
    from pipeline_lib.scoring.inbox import score_new

    result = score_new(cfg, versions, files, Path(output), Options(**options))
    get_run_logger().info(
        "[score] %s: %s rows scored into %s", result["status"], result.get("rows_out", 0), result.get("output")
    )
    return result
