"""Scheduled retraining: serve the retrain flow as a Prefect deployment with a cron schedule.

`tunepipe schedule --cron "0 3 * * 1"` runs `serve` in the foreground against `PREFECT_API_URL` (a
`prefect server start`, or the team server of infra/). Each run, scheduled or triggered with
`prefect deployment run retrain/<name>`, skips with its reason when the data and config are unchanged.
For a work pool instead of a long-lived process, see prefect.yaml (`prefect deploy --all`).
"""

from __future__ import annotations

from typing import Any

from flows.retrain import retrain

DEFAULT_DEPLOYMENT = "scheduled"


def check_cron(cron: str | None) -> None:
    """A clear error for a malformed cron expression (before anything is registered)."""
    from pydantic import ValidationError

    from pipeline_lib.config import ConfigError

    if cron is None:
        return
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise ConfigError(f"--cron {cron!r}: not a cron expression; expected 5 fields, e.g. '0 3 * * 1'") from None


def deployment_parameters(
    config: str | list[str] | None, overrides: list[str] | None, force: bool = False
) -> dict[str, Any]:
    """The retrain flow's parameters for every run of the deployment."""
    return {"config": config, "overrides": list(overrides or []), "force": force}


def serve(
    cron: str | None,
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    name: str = DEFAULT_DEPLOYMENT,
    limit: int = 1,
) -> None:
    """Create (or update) deployment `retrain/<name>` and execute its runs until interrupted.

    `cron` None serves without a schedule (runs only when triggered); `limit` caps concurrent runs.
    """
    retrain.serve(
        name=name,
        cron=cron,
        parameters=deployment_parameters(config, overrides),
        description="Retrain when the data version or config changed; skip with the reason otherwise.",
        tags=["tunepipe", "retrain"],
        limit=limit,
        pause_on_shutdown=False,
    )
