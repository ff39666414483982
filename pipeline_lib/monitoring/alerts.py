"""Sending each surge once: one JSON body per alert (group, window, share, baseline, p and q values, examples),
posted to a URL (`--notify`, `trend.notify_url`) or handed to any other sender (the flow's Prefect notification
block), with a record of what was sent to where (`trend.state_path`, default `trend_alerts.json` beside the scored
data) so that the next run over the same data sends nothing again. The record is read, updated and written under
an exclusive file lock, one alert at a time, so two runs at once never send the same alert twice and an alert
whose sending failed is tried again on the next run."""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import write_json

STATE_FILE = "trend_alerts.json"
KIND = "tunepipe.trend.surge"
Sender = Callable[[dict[str, Any]], None]


class NotifyError(RuntimeError):
    """An alert could not be delivered (the message names where and why); it stays unsent for the next run."""


def state_path(cfg: PipelineConfig, scored: str | Path) -> Path:
    """`trend.state_path`, else `trend_alerts.json` beside the scored data; refused outside `paths.write_roots`."""
    from pipeline_lib.roots import check_write

    root = Path(scored)
    path = Path(cfg.trend.state_path) if cfg.trend.state_path else (root if root.is_dir() else root.parent) / STATE_FILE
    return check_write(path, cfg, "trend.state_path (default: beside the scored data)")


def alert_key(report: dict[str, Any], alert: dict[str, Any]) -> str:
    """What makes an alert the same alert: the watched label, the window length, the group and the window."""
    return f"{report['label']}|{report['window']}|{alert['key']}|{alert['start']}"


def payload(report: dict[str, Any], alert: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of one alert (the same for a URL and for a notification block)."""
    return {
        "kind": KIND,
        "id": alert_key(report, alert),
        "scored": report["scored"],
        "model": report.get("model"),
        "label": report["label"],
        "group": alert["group"],
        "group_key": alert["key"],
        "window": {"start": alert["start"], "end": alert["end"], "length": report["window"]},
        "n": alert["n"],
        "count": alert["count"],
        "share": alert["share"],
        "baseline": alert["baseline"],
        "effect": alert["effect"],
        "p_value": alert["p_value"],
        "q_value": alert["q_value"],
        "index": alert["index"],
        "index_formula": report["index"]["formula"],
        "test": report["test"],
        "alpha": report["settings"]["alpha"],
        "examples": alert.get("examples", []),
        "report": (report.get("outputs") or {}).get("html"),
    }


def subject(body: dict[str, Any]) -> str:
    return (
        f"tunepipe trend: {body['label']} surge in {body['group_key']} ({body['window']['start']}, "
        f"{body['share']:.0%} vs {body['baseline']['share']:.0%})"
    )


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> None:
    """POST `body` as JSON to `url`; any answer but 2xx is a NotifyError."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"--notify {url}: cannot post the alert ({exc}); it will be sent on the next run") from None
    if not 200 <= status < 300:
        raise NotifyError(f"--notify {url}: answered HTTP {status}; the alert will be sent on the next run")


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The state file's content, under an exclusive lock; written back on the way out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except ValueError:
            raise NotifyError(f"{path}: not valid JSON (the record of sent alerts); fix or delete it") from None
        state.setdefault("sent", {})
        try:
            yield state
        finally:  # what was sent before a failure stays recorded
            write_json(path, state)


def send_new(report: dict[str, Any], senders: dict[str, Sender], state: Path) -> dict[str, Any]:
    """Send every alert of `report` that `state` does not record as sent to each destination of `senders`
    (destination name → sender); returns what was sent and what was skipped as already sent."""
    outcome: dict[str, Any] = {"state": str(state), "sent": [], "already_sent": []}
    if not report["alerts"] or not senders:
        return outcome
    with _locked(state) as record:
        for alert in report["alerts"]:
            body = payload(report, alert)
            for destination, send in senders.items():
                key = f"{destination}|{body['id']}"
                if key in record["sent"]:
                    outcome["already_sent"].append(key)
                    continue
                send(body)
                record["sent"][key] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                outcome["sent"].append(key)
    return outcome


def url_sender(url: str) -> Sender:
    return lambda body: post_json(url, body)


def senders(cfg: PipelineConfig, block_sender: Callable[[str], Sender] | None = None) -> dict[str, Sender]:
    """Where new alerts go, by destination name: `trend.notify_url`, and `trend.notify_block` through
    `block_sender` (the Prefect side, `tasks.trend.block_sender`: this package imports no Prefect)."""
    found: dict[str, Sender] = {}
    if cfg.trend.notify_url:
        found[f"url:{cfg.trend.notify_url}"] = url_sender(cfg.trend.notify_url)
    if cfg.trend.notify_block and block_sender is not None:
        found[f"block:{cfg.trend.notify_block}"] = block_sender(cfg.trend.notify_block)
    return found


def notify(
    cfg: PipelineConfig,
    scored: str | Path,
    report: dict[str, Any],
    block_sender: Callable[[str], Sender] | None = None,
) -> dict[str, Any]:
    """Send the report's new alerts to every configured destination and record them (nothing without alerts)."""
    if not report["alerts"]:
        return {"state": None, "sent": [], "already_sent": [], "destinations": []}
    destinations = senders(cfg, block_sender)
    outcome = send_new(report, destinations, state_path(cfg, scored))
    return {**outcome, "destinations": list(destinations)}
