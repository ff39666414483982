"""Build the example news stream of README's "Monitor sentiment over time": sentences of the packaged sample
(`pipeline_lib/resources/financial_sentiment_sample.csv`) published by three tickers over 14 days, about 15 %
negative, 55 % neutral, 30 % positive, with a surge of negative news for KONE on the last day.

    python docs/trend_example.py incoming/news.csv
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline_lib" / "resources" / "financial_sentiment_sample.csv"
START = datetime(2026, 3, 2, tzinfo=timezone.utc)
MIX = {"negative": 0.15, "neutral": 0.55, "positive": 0.30}


def news(days: int = 14, per_day: int = 40, surge: tuple[str, int] = ("KONE", 30), seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sample = pd.read_csv(SAMPLE)
    weights = sample["label"].map(MIX) / sample["label"].map(sample["label"].value_counts())
    negative = sample.index[sample["label"] == "negative"]
    rows = []
    for ticker in ("KONE", "NOKIA", "UPM"):
        for day in range(days):
            chosen = list(rng.choice(sample.index, per_day, p=weights / weights.sum()))
            if ticker == surge[0] and day == days - 1:
                chosen += list(rng.choice(negative, surge[1]))
            for index in chosen:
                stamp = START + timedelta(days=day, seconds=int(rng.integers(0, 86400)))
                rows.append(
                    {
                        "published_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "ticker": ticker,
                        "text": sample.at[index, "text"],
                    }
                )
    frame = pd.DataFrame(rows).sort_values("published_at", ignore_index=True)
    frame.insert(0, "id", [f"n{i:05d}" for i in range(len(frame))])
    return frame


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "incoming/news.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    news().to_csv(target, index=False)
    print(f"wrote {target}")
