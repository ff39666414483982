"""`tunepipe trend SCORED`: per group and time window of a scored dataset, the watched label's share and a
sentiment index, and a verdict on the latest window of each group against its trailing baseline.

One pass over the part files aggregates counts per (group, window) (`scored.aggregate`); the test runs on those
counts (`stats`); a second pass, only when something alerts, collects the most negative texts of each alerted
window as examples. The latest window is the dataset's last calendar window (its newest timestamp's window): a
group with no rows there has no verdict, and a window still filling up is judged on what it has, once it reaches
`trend.min_count` rows. Writes `trend.json` and `trend.html` (`report`); sending alerts is `alerts`' job.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import PipelineConfig, TrendConfig
from pipeline_lib.monitoring import stats
from pipeline_lib.monitoring.scored import TrendError, aggregate, check_columns, most_negative, open_scored

SURGE, NO_SURGE, NO_VERDICT = "surge", "no surge", "no verdict"
ALL = "(all)"


def group_key(by: list[str], values: tuple[str, ...]) -> str:
    """`ticker=NOKIA`, `ticker=NOKIA,topic=tech`, or `(all)` without group columns."""
    return ",".join(f"{c}={v}" for c, v in zip(by, values, strict=True)) or ALL


def _number(value: Any, digits: int = 6) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return int(value) if hasattr(value, "__int__") and not isinstance(value, bool) else value


def window_record(row: dict[str, Any], settings: TrendConfig, end: pd.Timestamp) -> dict[str, Any]:
    """One window in full: counts, share, index, baseline, effect, p and q values, verdict and its reason."""
    return {
        "start": row["window"].isoformat(),
        "end": end.isoformat(),
        "n": int(row["n"]),
        "count": int(row["hits"]),
        "share": _number(row["share"]),
        "index": _number(row["index"]),
        "baseline": {
            "windows": int(row["baseline_windows"]),
            "n": int(row["baseline_n"]),
            "count": int(row["baseline_hits"]),
            "share": _number(row["baseline_share"]),
            "index": _number(row["baseline_index"]),
            "band": [_number(row["band_low"]), _number(row["band_high"])],
            "index_band": _number(row["index_band"]),
        },
        "effect": _number(row["effect"]),
        "p_value": _number(row["p_value"]),
        "q_value": _number(row["q_value"]),
        "alert": bool(row["alert"]),
        "reason": stats.reason(row, settings),
    }


# A group's every window, column by column (trend.json stays compact with a year of windows per group):
# JSON name -> column of the tested frame; p and q values keep full precision, the rest 6 decimals.
SERIES = {
    "n": "n",
    "count": "hits",
    "share": "share",
    "index": "index",
    "baseline_n": "baseline_n",
    "baseline_share": "baseline_share",
    "baseline_index": "baseline_index",
    "band_low": "band_low",
    "band_high": "band_high",
    "index_band": "index_band",
    "effect": "effect",
    "p_value": "p_value",
    "q_value": "q_value",
    "alert": "alert",
}


def window_series(rows: pd.DataFrame) -> dict[str, list[Any]]:
    """`rows` (one group's windows in time order) as lists per field; NaN (nothing to compute) as null."""
    seconds = rows["window"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    series: dict[str, list[Any]] = {"start": np.char.add(np.datetime_as_string(seconds), "+00:00").tolist()}
    for name, column in SERIES.items():
        values = rows[column].to_numpy()
        if values.dtype.kind in "biu":
            series[name] = values.tolist()
            continue
        values = values.astype(float)
        shown = values if name in ("p_value", "q_value") else values.round(6)
        series[name] = np.where(np.isnan(values), None, shown).tolist()
    return series


def analyse(cfg: PipelineConfig, scored_path: str | Path) -> dict[str, Any]:
    """The trend report of the scored dataset at `scored_path` under `cfg.trend` (reads only)."""
    settings = cfg.trend
    scored = open_scored(scored_path)
    index = check_columns(scored, settings)
    by = list(settings.by)
    if settings.engine == "spark":
        from pipeline_lib.monitoring.spark import aggregate_spark

        aggregates = aggregate_spark(scored, settings, index, settings.spark_master)
    else:
        aggregates = aggregate(scored, settings, index)
    aggregates["window"] = aggregates["window"].astype("datetime64[us, UTC]")
    latest = aggregates["window"].max()
    step = stats.window_offset(settings.window)
    tested = stats.test_windows(stats.windows_of(aggregates, by, settings.window, latest), by, settings)

    groups, alerts, wanted = [], [], {}
    for values, rows in tested.groupby(by, sort=True) if by else [((), tested)]:
        values = tuple(str(v) for v in (values if isinstance(values, tuple) else (values,)))
        rows = rows.sort_values("window")
        last = window_record(rows.iloc[-1].to_dict(), settings, latest + step)
        verdict = SURGE if last["alert"] else NO_SURGE if last["p_value"] is not None else NO_VERDICT
        key = group_key(by, values)
        groups.append(
            {
                "key": key,
                "group": dict(zip(by, values, strict=True)),
                "verdict": verdict,
                "latest": last,
                "windows": window_series(rows),
            }
        )
        if last["alert"]:
            alerts.append({"key": key, "group": dict(zip(by, values, strict=True)), **last})
            wanted[(values, latest)] = key
    examples = most_negative(scored, settings, wanted, settings.examples)
    for alert in alerts:
        alert["examples"] = examples.get(alert["key"], [])

    judged = [g for g in groups if g["verdict"] != NO_VERDICT]
    verdict = SURGE if alerts else NO_SURGE if judged else NO_VERDICT
    return {
        "scored": str(scored.root),
        "files": len(scored.files),
        "rows": int(aggregates["n"].sum()),
        "model": _manifest_model(scored.root),
        "time_column": settings.time_column,
        "by": by,
        "window": settings.window,
        "label": settings.label,
        "labels": scored.labels,
        "index": {
            "formula": index.formula,
            "positive": index.positive,
            "negative": index.negative,
            "chosen": index.reason,
        },
        "test": stats.TEST,
        "settings": settings.model_dump(
            mode="json",
            include={"baseline_windows", "min_count", "min_baseline_count", "min_effect", "alpha", "examples"},
        ),
        "latest_window": {"start": latest.isoformat(), "end": (latest + step).isoformat()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict,
        "groups": groups,
        "alerts": alerts,
        "surge": bool(alerts),
    }


def _manifest_model(root: Path) -> dict[str, Any] | None:
    """The model and version the manifest of `tunepipe score` names, if there is one."""
    import json

    manifest = root / "manifest.json" if root.is_dir() else None
    if manifest is None or not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    runs = data.get("runs") if isinstance(data, dict) else None
    if runs and isinstance(runs[-1], dict) and runs[-1].get("models"):  # `tunepipe score`: the last run's first model
        data = runs[-1]["models"][0]
    found = {k: data[k] for k in ("model", "name", "version", "onnx_sha256") if isinstance(data.get(k), str | int)}
    return found or None


def output_folder(cfg: PipelineConfig) -> Path:
    return Path(cfg.trend.output) if cfg.trend.output else Path(cfg.paths.artifacts) / "trend"


def run_trend(cfg: PipelineConfig, scored_path: str | Path, html: str | Path | None = None) -> dict[str, Any]:
    """`analyse`, then write `trend.json` and the HTML report (`html`, default `trend.html` beside the JSON);
    their paths are in the report's `outputs`."""
    from pipeline_lib.layout import write_json
    from pipeline_lib.monitoring.report import write_html
    from pipeline_lib.roots import check_write

    if html:
        check_write(html, cfg, "--html")
    report = analyse(cfg, scored_path)
    folder = output_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    html_path = Path(html) if html else folder / "trend.html"
    report["outputs"] = {"json": str(folder / "trend.json"), "html": str(html_path)}
    write_html(report, html_path)
    write_json(folder / "trend.json", report)
    return report


__all__ = ["NO_SURGE", "NO_VERDICT", "SURGE", "TrendError", "analyse", "run_trend"]
