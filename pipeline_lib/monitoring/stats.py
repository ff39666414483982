"""The surge test on aggregated counts: each window of each group against its trailing baseline.

For a window with `n` rows of which `k` carry the watched label, the baseline is the `baseline_windows` calendar
windows before it (empty windows count, with no rows), pooled: `n_b` rows, `k_b` watched. The one-sided Fisher
exact test (`scipy.stats.fisher_exact`, alternative="greater") asks whether the window's share k/n is higher than
the baseline's: it conditions on both totals, so a small baseline does not make it over-confident (an exact
binomial test against k_b/n_b would treat the baseline share as known). Per window, the p-values of all groups
with a verdict are corrected by Benjamini-Hochberg (`scipy.stats.false_discovery_control`). A window alerts when
q <= alpha, its share rose by at least `min_effect`, it has `min_count` rows and its baseline `min_baseline_count`.

The test assumes rows are independent draws within a group; news that arrives in bursts of near-copies (one story
syndicated many times) makes it over-confident, which `min_effect` and de-duplicating before scoring temper.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline_lib.config import TrendConfig, window_length

TEST = "Fisher exact, one-sided (rise of the share against the pooled trailing baseline)"


def window_offset(window: str) -> pd.DateOffset | pd.Timedelta:
    multiple, unit = window_length(window)
    return pd.Timedelta(weeks=multiple) if unit == "week" else pd.Timedelta(**{f"{unit}s": multiple})


def windows_of(aggregates: pd.DataFrame, by: list[str], window: str, latest: pd.Timestamp) -> pd.DataFrame:
    """Every group's calendar windows from its first to `latest` (windows with no rows filled with zeros)."""
    step = window_offset(window)
    frames = []
    for key, rows in aggregates.groupby(by, sort=True) if by else [((), aggregates)]:
        key = key if isinstance(key, tuple) else (key,)
        first = rows["window"].min()
        span = pd.DatetimeIndex([first + i * step for i in range(int((latest - first) / step) + 1)], name="window")
        full = rows.set_index("window")[["n", "hits", "index_sum", "index_sq"]].reindex(span, fill_value=0)
        full = full.reset_index()
        for column, value in zip(by, key, strict=True):
            full[column] = value
        frames.append(full)
    return pd.concat(frames, ignore_index=True)


def test_windows(frame: pd.DataFrame, by: list[str], settings: TrendConfig) -> pd.DataFrame:
    """`frame` (one group's windows in time order per group) with baseline, effect, p, q, band and alert columns."""
    from scipy import stats

    out = []
    for _, rows in frame.groupby(by, sort=True) if by else [((), frame)]:
        rows = rows.sort_values("window").reset_index(drop=True)
        roll = rows[["n", "hits", "index_sum", "index_sq"]].rolling(settings.baseline_windows, min_periods=1).sum()
        base = roll.shift(1).fillna(0)
        rows["baseline_n"] = base["n"].astype(int)
        rows["baseline_hits"] = base["hits"].astype(int)
        rows["baseline_windows"] = [min(i, settings.baseline_windows) for i in range(len(rows))]
        with np.errstate(invalid="ignore", divide="ignore"):
            rows["share"] = rows["hits"] / rows["n"]
            rows["index"] = rows["index_sum"] / rows["n"]
            rows["baseline_share"] = base["hits"] / base["n"]
            rows["baseline_index"] = base["index_sum"] / base["n"]
            variance = (base["index_sq"] / base["n"] - rows["baseline_index"] ** 2).clip(lower=0)
            rows["index_band"] = 1.96 * np.sqrt(variance / rows["n"].clip(lower=1))
        rows["effect"] = rows["share"] - rows["baseline_share"]
        n, k, n_b, k_b = (rows[c].to_numpy() for c in ("n", "hits", "baseline_n", "baseline_hits"))
        banded = (n > 0) & (n_b > 0)
        p_b = np.where(banded, rows["baseline_share"].fillna(0).to_numpy(), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            low = np.where(banded, stats.binom.ppf(0.025, n, p_b) / n, np.nan)
            high = np.where(banded, stats.binom.ppf(0.975, n, p_b) / n, np.nan)
        tested_here = (n >= settings.min_count) & (n_b >= settings.min_baseline_count)
        p_values = [
            float(stats.fisher_exact([[k[i], n[i] - k[i]], [k_b[i], n_b[i] - k_b[i]]], alternative="greater")[1])
            if tested_here[i]
            else math.nan
            for i in range(len(rows))
        ]
        rows["band_low"], rows["band_high"], rows["p_value"] = low, high, p_values
        out.append(rows)
    tested = pd.concat(out, ignore_index=True)
    tested["q_value"] = math.nan
    for _, rows in tested.groupby("window"):
        ok = rows["p_value"].notna()
        if ok.any():
            tested.loc[rows.index[ok], "q_value"] = stats.false_discovery_control(rows.loc[ok, "p_value"].to_numpy())
    tested["alert"] = (tested["q_value"] <= settings.alpha) & (tested["effect"] >= settings.min_effect)
    return tested


def reason(row: pd.Series, settings: TrendConfig) -> str:
    """Why a window has the verdict it has, in words."""
    if row["n"] == 0:
        return "no rows in this window"
    if row["n"] < settings.min_count:
        return f"no verdict: {int(row['n'])} rows < trend.min_count {settings.min_count}"
    if row["baseline_n"] < settings.min_baseline_count:
        return (
            f"no verdict: baseline has {int(row['baseline_n'])} rows in {int(row['baseline_windows'])} windows "
            f"< trend.min_baseline_count {settings.min_baseline_count}"
        )
    if row["alert"]:
        return f"surge: q={row['q_value']:.2g} <= alpha {settings.alpha:g}, rise {row['effect']:+.1%}"
    if row["q_value"] > settings.alpha:
        return f"no surge: q={row['q_value']:.2g} > alpha {settings.alpha:g}"
    return f"no surge: rise {row['effect']:+.1%} < trend.min_effect {settings.min_effect:g}"
