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
    firsts = aggregates.groupby(by, sort=True)["window"].min().reset_index() if by else None
    if firsts is None:
        firsts = pd.DataFrame({"window": [aggregates["window"].min()]})
    counts = ((latest - firsts["window"]) // step).astype(int).to_numpy() + 1
    full = firsts.loc[firsts.index.repeat(counts)].reset_index(drop=True)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    full["window"] = (full["window"] + pd.to_timedelta(offsets * step.value, unit="ns")).astype(
        aggregates["window"].dtype
    )
    merged = full.merge(aggregates, on=[*by, "window"], how="left")
    columns = ["n", "hits", "index_sum", "index_sq"]
    merged[columns] = merged[columns].fillna(0)
    return merged.astype({"n": "int64", "hits": "int64"})


def fisher_greater(k: np.ndarray, n: np.ndarray, k_b: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-values of [[k, n-k], [k_b, n_b-k_b]] (alternative "greater"), vectorized: the
    hypergeometric tail P(X >= k) that `scipy.stats.fisher_exact` computes for one table."""
    from scipy import stats

    return np.clip(stats.hypergeom.sf(k - 1, n + n_b, n, k + k_b), 0.0, 1.0)


def test_windows(frame: pd.DataFrame, by: list[str], settings: TrendConfig) -> pd.DataFrame:
    """`frame` (every group's windows) with baseline, effect, p, q, band and alert columns, for every window."""
    from scipy import stats

    columns, size = ["n", "hits", "index_sum", "index_sq"], settings.baseline_windows
    rows = frame.sort_values([*by, "window"]).reset_index(drop=True)
    groups = rows.groupby(by, sort=False) if by else None
    total = groups[columns].cumsum() if groups is not None else rows[columns].cumsum()

    def shifted(periods: int) -> pd.DataFrame:
        moved = total.groupby([rows[c] for c in by], sort=False).shift(periods) if by else total.shift(periods)
        return moved.fillna(0)

    base = shifted(1) - shifted(size + 1)  # the `size` windows before each window, pooled
    position = groups.cumcount().to_numpy() if groups is not None else np.arange(len(rows))
    rows["baseline_windows"] = np.minimum(position, size)
    rows["baseline_n"] = base["n"].round().astype(int)
    rows["baseline_hits"] = base["hits"].round().astype(int)
    n, k = rows["n"].to_numpy(), rows["hits"].to_numpy()
    n_b, k_b = rows["baseline_n"].to_numpy(), rows["baseline_hits"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        rows["share"] = k / n
        rows["index"] = rows["index_sum"] / n
        rows["baseline_share"] = k_b / n_b
        rows["baseline_index"] = base["index_sum"] / n_b
        variance = (base["index_sq"] / n_b - rows["baseline_index"] ** 2).clip(lower=0)
        rows["index_band"] = 1.96 * np.sqrt(variance / np.maximum(n, 1))
        banded = (n > 0) & (n_b > 0)
        p_b = np.where(banded, k_b / np.maximum(n_b, 1), 0.0)
        rows["band_low"] = np.where(banded, stats.binom.ppf(0.025, n, p_b) / n, np.nan)
        rows["band_high"] = np.where(banded, stats.binom.ppf(0.975, n, p_b) / n, np.nan)
    rows["effect"] = rows["share"] - rows["baseline_share"]
    tested = (n >= settings.min_count) & (n_b >= settings.min_baseline_count)
    rows["p_value"] = np.where(tested, fisher_greater(k, n, k_b, n_b), np.nan)
    rows["q_value"] = math.nan
    for _, same in rows[tested].groupby("window"):  # Benjamini-Hochberg across the groups of each window
        rows.loc[same.index, "q_value"] = stats.false_discovery_control(same["p_value"].to_numpy())
    rows["alert"] = (rows["q_value"] <= settings.alpha) & (rows["effect"] >= settings.min_effect)
    return rows


def reason(row: dict, settings: TrendConfig) -> str:
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
