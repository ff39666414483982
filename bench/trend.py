"""Does `tunepipe trend` stay out of core? Wall time and peak RSS of the trend over a scored dataset of N rows and
of 10 N rows, beside the in-memory route (pandas reads every part, then groups), each in its own process.

    python bench/trend.py --rows 365000 --tickers 200        # a year of 1,000 texts a day; 10x: 3.65 M rows
    python bench/trend.py --smoke                             # 20,000 and 200,000 rows, a minute

The scored rows are synthetic (no model runs here: the trend reads what `score` wrote): an id, a UTC timestamp
spread over 365 days, a ticker, a 100-character text, a label at 15/55/30 % and p_negative/p_neutral/p_positive
(float32, as `score` writes them), in part files of 100,000 rows. Writes the `trend` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import REPO, machine, write_section

PART_ROWS = 100_000
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
if sys.argv[1] == "trend":
    from pipeline_lib.config import load_config
    from pipeline_lib.monitoring.trend import analyse
    cfg = load_config(None, ["trend.time_column=published_at", "trend.by=[ticker]", "trend.examples=5"])
    report = analyse(cfg, sys.argv[2])
    summary = {"groups": len(report["groups"]), "alerts": len(report["alerts"])}
else:
    import pandas as pd
    frame = pd.read_parquet(sys.argv[2])
    frame["window"] = frame["published_at"].dt.floor("1D")
    frame["hit"] = frame["label"] == "negative"
    frame["index"] = frame["p_positive"] - frame["p_negative"]
    grouped = frame.groupby(["ticker", "window"]).agg(n=("id", "size"), hits=("hit", "sum"), index=("index", "sum"))
    summary = {"groups": int(grouped.index.get_level_values(0).nunique()), "alerts": None}
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({**summary, "seconds": seconds, "peak_mb": peak}))
"""


def write_dataset(folder: Path, rows: int, tickers: int, seed: int = 0) -> int:
    """Synthetic scored part files; returns their total size in bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    words = np.array(
        [
            "profit",
            "sales",
            "fell",
            "rose",
            "quarter",
            "outlook",
            "shares",
            "guidance",
            "loss",
            "growth",
            "order",
            "market",
        ]
    )
    start = np.datetime64("2025-01-01T00:00:00", "us")
    for index, first in enumerate(range(0, rows, PART_ROWS)):
        n = min(PART_ROWS, rows - first)
        labels = rng.choice(np.array(["negative", "neutral", "positive"]), n, p=[0.15, 0.55, 0.30])
        probabilities = rng.dirichlet([1, 1, 1], n).astype(np.float32)
        texts = [" ".join(rng.choice(words, 14)) for _ in range(n)]
        table = pa.table(
            {
                "id": pa.array([f"r{first + i}" for i in range(n)]),
                "published_at": pa.array(
                    start + rng.integers(0, 365 * 86400 * 10**6, n).astype("timedelta64[us]")
                ).cast(pa.timestamp("us", tz="UTC")),
                "ticker": pa.array([f"T{t:04d}" for t in rng.integers(0, tickers, n)]),
                "text": pa.array(texts),
                "label": pa.array(labels),
                "p_negative": probabilities[:, 0],
                "p_neutral": probabilities[:, 1],
                "p_positive": probabilities[:, 2],
            }
        )
        pq.write_table(table, folder / f"part-bench-{index:06d}.parquet", compression="zstd")
    return sum(p.stat().st_size for p in folder.iterdir())


def measure(route: str, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, route, str(folder)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=365_000)
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="20,000 and 200,000 rows; RESULTS.md is not touched")
    args = parser.parse_args()
    rows = 20_000 if args.smoke else args.rows

    root = Path(tempfile.mkdtemp(prefix="bench-trend-"))
    lines = []
    try:
        for scale in (1, 10):
            folder = root / f"x{scale}"
            size = write_dataset(folder, rows * scale, args.tickers)
            for route, name in (("trend", "tunepipe trend (pyarrow batches)"), ("pandas", "pandas, all in memory")):
                start = time.perf_counter()
                result = measure(route, folder)
                line = (
                    f"| {name} | {rows * scale:,} | {size / 2**20:.0f} | {result['seconds']:.1f} | "
                    f"{rows * scale / result['seconds']:,.0f} | {result['peak_mb']:.0f} |"
                )
                lines.append(line)
                print(line, f"(child wall {time.perf_counter() - start:.1f}s)", flush=True)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.smoke:
        return
    body = "\n".join(
        [
            "## Sentiment trend out of core (issue 27)",
            "",
            f"`analyse` (aggregation per ticker and day, the surge test, examples) over synthetic scored part files of "
            f"{args.tickers} tickers over 365 days, at N and 10 N rows, each route in a fresh process; peak RSS is "
            "the process's maximum resident set. The pandas route only aggregates (no test), reading the whole "
            "dataset first: what a hand-written job does.",
            "",
            "| route | rows | Parquet MB | seconds | rows/s | peak RSS MB |",
            "|---|---|---|---|---|---|",
            *lines,
            "",
            f"Machine: {machine()}.",
        ]
    )
    write_section("trend", body)


if __name__ == "__main__":
    main()
