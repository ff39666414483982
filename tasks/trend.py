"""Thin Prefect tasks of the sentiment trend (`pipeline_lib.monitoring`): compute it, and send each new alert through
the configured Prefect notification block (`trend.notify_block`) and URL (`trend.notify_url`)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline_lib.config import PipelineConfig


def block_sender(name: str) -> Any:
    """A sender posting an alert's JSON through the saved notification block `name` ("BLOCK-TYPE/NAME", e.g.
    custom-webhook/trend-alerts, slack-webhook/markets): the JSON as the body, a one-line summary as the subject.
    A CustomWebhookNotificationBlock with `form_data: "{{body}}"` and a JSON content type delivers it unchanged."""
    from prefect.blocks.core import Block

    from pipeline_lib.monitoring.alerts import NotifyError, subject

    try:
        block = Block.load(name)
    except ValueError as exc:
        raise NotifyError(f"trend.notify_block {name!r}: no such saved block on this Prefect API ({exc})") from None
    if not callable(getattr(block, "notify", None)):
        raise NotifyError(f"trend.notify_block {name!r} is a {type(block).__name__}, not a notification block")

    def send(body: dict[str, Any]) -> None:
        try:
            block.notify(json.dumps(body), subject=subject(body))
        except Exception as exc:  # any failure of the block's service: try again on the next run
            raise NotifyError(f"trend.notify_block {name!r}: the alert was not delivered ({exc})") from None

    return send


@task(name="trend", cache_policy=NO_CACHE)
def compute(cfg: PipelineConfig, scored: str) -> dict[str, Any]:
    from pipeline_lib.monitoring.trend import run_trend

    report = run_trend(cfg, scored)
    logger = get_run_logger()
    logger.info("%s: %s (latest window %s)", scored, report["verdict"], report["latest_window"]["start"])
    verdicts = Counter(group["verdict"] for group in report["groups"])
    logger.info("groups: %s", ", ".join(f"{count} {verdict}" for verdict, count in sorted(verdicts.items())))
    for alert in report["alerts"]:
        logger.warning("  %s %s: %s", alert["key"], alert["start"], alert["reason"])
    return report


@task(name="notify", cache_policy=NO_CACHE)
def notify(cfg: PipelineConfig, scored: str, report: dict[str, Any]) -> dict[str, Any]:
    from pipeline_lib.monitoring.alerts import notify as send_new_alerts

    outcome = send_new_alerts(cfg, scored, report, block_sender)
    logger = get_run_logger()
    for key in outcome["sent"]:
        logger.warning("alert sent: %s", key)
    if report["alerts"] and not outcome["destinations"]:
        logger.warning("surge, but no trend.notify_block or trend.notify_url is set: no alert sent")
    return outcome
