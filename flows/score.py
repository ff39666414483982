"""The scoring flow: score the files that arrived in an inbox folder with the models' current versions, appending
to one scored dataset.

resolve models → find new files → score them. Each run looks the aliases up again (a promotion takes effect on the
next run) and scores only files whose content was never scored into the output (by SHA-256: a file changed in place
is scored again, as a new input). `tunepipe score --watch INBOX --output OUT --model NAME@ALIAS --every 10m` serves
it as deployment `score/<name>`; prefect.yaml deploys it to the team's work pool as `score/inbox`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from pipeline_lib.config import load_config
from pipeline_lib.roots import confine
from tasks import score as score_tasks

DEFAULT_DEPLOYMENT = "inbox"


@flow(name="score")
def score(
    inbox: str,
    output: str,
    models: list[str],
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    text_column: str | None = None,
    encoding: str | None = None,
    on_bad_row: str | None = None,
) -> dict[str, Any]:
    """resolve the models → the inbox's new files → score them into `output` (appending)."""
    cfg = load_config(config, overrides)
    confine(cfg)
    resolved = score_tasks.resolve_models(cfg, models)
    files = score_tasks.new_files(inbox, output)
    versions = [f"{m['name']}/{m['version']}" for m in resolved]
    options = {"text_column": text_column, "encoding": encoding, "on_bad_row": on_bad_row}
    if not files:
        get_run_logger().info("nothing new in %s", inbox)
    result = score_tasks.score_files(cfg, versions, [f["path"] for f in files], output, options)
    return {**result, "models": resolved, "files": files}


def deployment(
    inbox: str,
    output: str,
    models: list[str],
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    every_s: float = 600,
    name: str = DEFAULT_DEPLOYMENT,
    **options: Any,
) -> Any:
    """Deployment `score/<name>`, run every `every_s` seconds, with these parameters."""
    return score.to_deployment(
        name=name,
        interval=every_s,
        parameters={
            "inbox": inbox,
            "output": output,
            "models": list(models),
            "config": config,
            "overrides": list(overrides or []),
            **options,
        },
        description="Score the files that arrived in the inbox with the models' current versions; append.",
        tags=["tunepipe", "score"],
    )


def serve(
    inbox: str,
    output: str,
    models: list[str],
    config: str | list[str] | None,
    overrides: list[str],
    every_s: float,
    name: str = DEFAULT_DEPLOYMENT,
    **options: Any,
) -> None:
    """Create (or update) the deployment and execute its runs until interrupted."""
    from prefect import serve as serve_deployments

    serve_deployments(
        deployment(inbox, output, models, config, overrides, every_s, name, **options), limit=1, pause_on_shutdown=False
    )
