"""The sentiment trend flow: over a scored dataset, the watched label's share per group and window, the latest
window against its trailing baseline, and an alert through the configured Prefect notification block (and URL)
for each new surge, sent once.

Run it after each `score` batch (`prefect deployment run trend/daily`), or on its own schedule (prefect.yaml's
`daily` deployment). Its parameters mirror `tunepipe trend`'s options; unset ones come from the `trend:` section.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.cli_trend import trend_overrides
from pipeline_lib.config import load_config
from pipeline_lib.roots import confine
from tasks import trend as tasks


@flow(name="trend")
def trend(
    scored: str,
    config: str | list[str] | None = None,
    overrides: list[str] | None = None,
    time_column: str | None = None,
    by: list[str] | None = None,
    window: str | None = None,
    label: str | None = None,
    notify: str | None = None,
) -> dict[str, Any]:
    """Compute the trend of `scored`; send each new alert; return the verdict, the alerts and what was sent."""
    cfg = load_config(config, [*(overrides or []), *trend_overrides(time_column, by, window, label, notify=notify)])
    confine(cfg)
    report = tasks.compute(cfg, scored)
    sent = tasks.notify(cfg, scored, report)
    return {
        "verdict": report["verdict"],
        "latest_window": report["latest_window"],
        "alerts": [{k: a[k] for k in ("key", "start", "share", "p_value", "q_value")} for a in report["alerts"]],
        "outputs": report["outputs"],
        "notified": sent,
    }
