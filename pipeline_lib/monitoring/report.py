"""The trend's HTML report: one self-contained page (charts as embedded PNGs) with the verdict, a table of every
group's latest window, and for each alerted group a time-series chart (the watched label's share with its
baseline band and alert markers above, the sentiment index with its band below) and the most negative texts of
the alerted window."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from pipeline_lib.report.build import render

TEMPLATE = "trend.html.j2"
SHARE_COLOUR, INDEX_COLOUR, ALERT_COLOUR = "#c62828", "#1565c0", "#ff6f00"


def trend_png(group: dict[str, Any], label: str, formula: str) -> str:
    """One group's windows as a base64 PNG: share of `label` (line), its trailing-baseline 95% band (shaded), the
    baseline share (dashed), alerted windows (triangles); below, the sentiment index with its band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    series = group["windows"]
    rows = pd.DataFrame(
        {
            "start": pd.to_datetime(series["start"], utc=True),
            "share": series["share"],
            "index": series["index"],
            "low": series["band_low"],
            "high": series["band_high"],
            "base": series["baseline_share"],
            "base_index": series["baseline_index"],
            "index_band": series["index_band"],
            "alert": series["alert"],
        }
    ).astype({c: float for c in ("share", "index", "low", "high", "base", "base_index", "index_band")})
    x = rows["start"].dt.tz_localize(None)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True, height_ratios=(3, 2))
    top.fill_between(
        x, rows["low"], rows["high"], color=SHARE_COLOUR, alpha=0.15, step="mid", label="baseline 95% band"
    )
    top.plot(x, rows["base"], color=SHARE_COLOUR, linestyle="--", linewidth=1, label="baseline share")
    top.plot(x, rows["share"], color=SHARE_COLOUR, marker="o", markersize=3, linewidth=1.8, label=f"share {label}")
    alerted = rows[rows["alert"]]
    top.scatter(
        alerted["start"].dt.tz_localize(None),
        alerted["share"],
        marker="^",
        s=90,
        color=ALERT_COLOUR,
        edgecolor="black",
        zorder=5,
        label="alert",
    )
    top.set_ylabel(f"share {label}")
    top.set_ylim(bottom=0)
    top.legend(fontsize=7, loc="upper left")
    top.set_title(f"{group['key']}: {group['verdict']}", fontsize=10)
    base_index = rows["base_index"]
    bottom.fill_between(
        x, base_index - rows["index_band"], base_index + rows["index_band"], color=INDEX_COLOUR, alpha=0.15, step="mid"
    )
    bottom.plot(x, rows["index"], color=INDEX_COLOUR, marker="o", markersize=3, linewidth=1.8)
    bottom.axhline(0, color="#999", linewidth=0.6)
    bottom.set_ylabel("index", fontsize=8)
    bottom.set_title(formula, fontsize=8, loc="left")
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_html(report: dict[str, Any], path: Path) -> Path:
    """The report page at `path`: charts for the alerted groups (for every group when none alerted and there are
    at most `MAX_QUIET_CHARTS`, so that a quiet report still shows the trend)."""
    alerted = {alert["key"] for alert in report["alerts"]}
    shown = [g for g in report["groups"] if g["key"] in alerted]
    if not shown and len(report["groups"]) <= MAX_QUIET_CHARTS:
        shown = report["groups"]
    charts = {g["key"]: trend_png(g, report["label"], report["index"]["formula"]) for g in shown}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(TEMPLATE, {"r": report, "charts": charts}), encoding="utf-8")
    return path


MAX_QUIET_CHARTS = 3
