"""The monitoring flow: compare the served model's prediction log with its test split and, on drift, trigger the
retrain deployment.

`tunepipe monitor MODEL --cron "0 * * * *"` serves it as deployment `monitor/<name>` (foreground, against
`PREFECT_API_URL`); `prefect deployment run monitor/<name>` runs it now. On drift it calls Prefect's
`run_deployment` on `retrain_deployment` (default `monitor.retrain_deployment`) without waiting for it: the retrain
flow decides for itself whether there is anything new to train on (it skips, with its reason, when the data and
config are those of the champion).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.roots import confine
from pipeline_lib.serving.monitor import monitor as compare_with_test_split

DEFAULT_DEPLOYMENT = "scheduled"


@task(name="compare", cache_policy=NO_CACHE)
def compare(cfg: PipelineConfig, model: str, since: str | None) -> dict[str, Any]:
    return compare_with_test_split(cfg, model, since).to_dict()


@flow(name="monitor")
def monitor(
    model: str = "financial-sentiment@champion",
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    since: str | None = None,
    retrain_deployment: str | None = None,
) -> dict[str, Any]:
    """Compare the log with the test split; on drift, start `retrain_deployment` (FLOW/NAME) if one is set."""
    logger = get_run_logger()
    cfg = load_config(config, overrides)
    confine(cfg)
    report = compare(cfg, model, since)
    logger.info(
        "%s v%s: %s (%d predictions since %s)",
        report["name"],
        report["version"],
        report["verdict"],
        report["live"],
        report["since"],
    )
    for check in report["checks"]:
        logger.info("  %s %s: %s", "DRIFT" if check["drift"] else "ok   ", check["feature"], check["detail"])
    deployment = retrain_deployment or cfg.monitor.retrain_deployment
    report["retrain"] = None
    if report["drift"] and deployment:
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            started = run_deployment(deployment, timeout=0, tags=["tunepipe", "monitor", "drift"])
        except ObjectNotFound:
            raise ValueError(
                f"drift, but the retrain deployment {deployment!r} does not exist on this Prefect API: serve it "
                "(`tunepipe schedule --name NAME`), deploy prefect.yaml, or fix retrain_deployment "
                "(monitor.retrain_deployment)"
            ) from None
        report["retrain"] = {"deployment": deployment, "flow_run_id": str(started.id), "flow_run_name": started.name}
        logger.info("drift: started %s (flow run %s)", deployment, started.name)
    elif report["drift"]:
        logger.warning("drift, but no retrain deployment is set (monitor.retrain_deployment)")
    return report


def deployment(
    model: str,
    cron: str | None,
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    since: str | None = None,
    retrain_deployment: str | None = None,
    name: str = DEFAULT_DEPLOYMENT,
) -> Any:
    """Deployment `monitor/<name>` of the flow, on `cron` (None: only when triggered), with these parameters."""
    return monitor.to_deployment(
        name=name,
        cron=cron,
        parameters={
            "model": model,
            "config": config,
            "overrides": list(overrides or []),
            "since": since,
            "retrain_deployment": retrain_deployment,
        },
        description="Compare the served model's predictions with its test split; on drift, trigger retraining.",
        tags=["tunepipe", "monitor"],
    )


def serve(*args: Any, **kwargs: Any) -> None:
    """Create (or update) the deployment (`deployment`'s arguments) and execute its runs until interrupted."""
    from prefect import serve as serve_deployments

    serve_deployments(deployment(*args, **kwargs), limit=1, pause_on_shutdown=False)
