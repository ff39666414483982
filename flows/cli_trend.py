"""`tunepipe trend SCORED`: parse, run `pipeline_lib.monitoring.trend.run_trend`, send new alerts, print a table.
Exit 2 when the latest window of some group surged (like `tunepipe monitor` on drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_lib.config import ConfigError


def trend_overrides(
    time_column: str | None = None,
    by: list[str] | None = None,
    window: str | None = None,
    label: str | None = None,
    baseline_windows: int | None = None,
    notify: str | None = None,
    engine: str | None = None,
) -> list[str]:
    """The options given, as `trend.*` overrides (validated with the config)."""
    given = {
        "time_column": time_column,
        "by": list(by) if by else None,
        "window": window,
        "label": label,
        "baseline_windows": baseline_windows,
        "notify_url": notify,
        "engine": engine,
    }
    return [f"trend.{key}={json.dumps(value)}" for key, value in given.items() if value is not None]


def block_sender(name: str) -> Any:
    """The Prefect notification block's sender, imported only when `trend.notify_block` is set."""
    from tasks.trend import block_sender as prefect_block_sender

    return prefect_block_sender(name)


def trend(
    scored: Annotated[Path, typer.Argument(help="The scored dataset: the output folder of `tunepipe score`.")],
    time_column: Annotated[
        str | None, typer.Option("--time-column", "-t", help="Timestamp column (trend.time_column).")
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Group column; repeat for several (an input column, or NAME__label)."),
    ] = None,
    window: Annotated[
        str | None, typer.Option("--window", help="Window length: 1h, 6h, 1d, 1w (trend.window).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Watched label (trend.label, default negative).")] = None,
    baseline_windows: Annotated[
        int | None, typer.Option("--baseline-windows", help="Windows before the latest forming its baseline.")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="HTML report (default: beside trend.json).")] = None,
    notify: Annotated[
        str | None, typer.Option("--notify", help="POST each new alert's JSON to this URL (trend.notify_url).")
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="pyarrow (here, in batches) or spark (trend.spark_master).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: Annotated[list[Path] | None, typer.Option("--config", "-c", help="YAML config; repeat to layer.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a field.")] = None,
) -> None:
    """Share of the watched label and a sentiment index per group and window of a scored dataset; the latest
    window of each group against its trailing baseline (one-sided Fisher exact test, Benjamini-Hochberg across
    groups). Writes trend.json and an HTML report; sends each new alert once. Exit 2 on a surge."""
    from flows.cli_common import load_cli_config
    from pipeline_lib.monitoring.alerts import NotifyError
    from pipeline_lib.monitoring.alerts import notify as send_alerts
    from pipeline_lib.monitoring.scored import TrendError
    from pipeline_lib.monitoring.trend import run_trend

    try:
        sets = [*(overrides or []), *trend_overrides(time_column, by, window, label, baseline_windows, notify, engine)]
        cfg = load_cli_config(config, sets)
        report = run_trend(cfg, scored, html)
    except (ConfigError, TrendError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    failed = None
    try:
        report["notified"] = send_alerts(cfg, scored, report, block_sender)
    except (ConfigError, NotifyError) as exc:  # the verdict stands; the alert is sent on the next run
        failed = f"error: {exc}"
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    if failed:
        typer.secho(failed, fg=typer.colors.RED, err=True)
    if report["surge"]:
        raise typer.Exit(2)


def _pct(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else f"{value:+.1%}" if signed else f"{value:.1%}"


MAX_ROWS = 40  # groups shown in the table: surges first, then by q-value


def _rank(group: dict[str, Any]) -> tuple[int, float, str]:
    latest = group["latest"]
    q = latest["q_value"] if latest["q_value"] is not None else 2.0
    return (group["verdict"] != "surge", q, group["key"])


def print_report(report: dict[str, Any]) -> None:
    import sys

    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)  # logs and pipes get the whole table
    latest = report["latest_window"]
    table = Table(
        title=f"share of {report['label']} per {', '.join(report['by']) or 'all rows'}, {report['window']} windows, "
        f"latest from {latest['start']}",
        caption=f"index = {report['index']['formula']} ({report['index']['chosen']})",
        box=box.SIMPLE_HEAD,
    )
    for column in ("group", "rows", report["label"], "share", "baseline", "rise", "index", "p", "q", "verdict"):
        table.add_column(column, justify="left" if column in ("group", "verdict") else "right", no_wrap=True)
    colours = {"surge": "bold red", "no surge": "green"}
    quiet = []
    ranked = sorted(report["groups"], key=_rank)
    for group in ranked[:MAX_ROWS]:
        w = group["latest"]
        table.add_row(
            escape(group["key"]),
            str(w["n"]),
            str(w["count"]),
            _pct(w["share"]),
            _pct(w["baseline"]["share"]),
            _pct(w["effect"], signed=True),
            "–" if w["index"] is None else f"{w['index']:+.3f}",
            "–" if w["p_value"] is None else f"{w['p_value']:.2g}",
            "–" if w["q_value"] is None else f"{w['q_value']:.2g}",
            f"[{colours.get(group['verdict'], 'yellow')}]{group['verdict']}[/]",
        )
        if group["verdict"] == "no verdict":
            quiet.append(f"  {escape(group['key'])}: {escape(w['reason'])}")
    console.print(table)
    if len(ranked) > MAX_ROWS:
        console.print(f"... and {len(ranked) - MAX_ROWS} more groups in trend.json", highlight=False)
    for line in quiet if len(quiet) <= 20 else [*quiet[:20], f"  ... and {len(quiet) - 20} more in trend.json"]:
        console.print(line, highlight=False)
    for alert in report["alerts"]:
        console.print(
            f"[bold red]SURGE[/] {escape(alert['key'])} {alert['start']}: {alert['count']}/{alert['n']} "
            f"{report['label']} ({alert['share']:.1%} vs {alert['baseline']['share']:.1%} in {alert['baseline']['n']} "
            f"baseline rows), p={alert['p_value']:.2g} q={alert['q_value']:.2g}",
            highlight=False,
        )
        for example in alert["examples"][:3]:
            console.print(f"    {example['p_' + report['label']]:.3f}  {escape(str(example['text'])[:100])}")
    notified = report.get("notified") or {}
    for key in notified.get("sent", []):
        console.print(f"alert sent: {escape(key)}", highlight=False)
    if notified.get("already_sent"):
        console.print(f"{len(notified['already_sent'])} alert(s) sent before, not again (record {notified['state']})")
    console.print(f"report: {report['outputs']['json']}, {report['outputs']['html']}", highlight=False)
    console.print(f"verdict: [{colours.get(report['verdict'], 'yellow')}]{report['verdict']}[/]")
