"""Scored streams for the trend tests: real Financial PhraseBank sentences scored once by a real registered model,
then resampled into seeded streams (ticker, timestamp) written as a scored dataset in `tunepipe score`'s layout
(`part-*.parquet` + `manifest.json`). Once `score` is merged, `score_pool` can become one `tunepipe score` call."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
TICKERS = ("NOKIA", "KONE", "FORTUM", "ELISA", "UPM", "WARTSILA")


def phrasebank(path: Path) -> pd.DataFrame:
    """FPB sentences (a `Sentences_*.txt` file) with their human label (`text`, `true_label`), duplicates dropped."""
    lines = path.read_text(encoding="iso-8859-1").replace("\r", "").split("\n")
    rows = [line.rpartition("@") for line in lines if "@" in line]
    frame = pd.DataFrame({"text": [r[0].strip() for r in rows], "true_label": [r[2].strip() for r in rows]})
    return frame.drop_duplicates("text").reset_index(drop=True)


def score_pool(onnx_dir: Path, texts: pd.DataFrame, name: str, version: str) -> pd.DataFrame:
    """`texts` scored by the ONNX folder's real predictor: `label`, one `p_<label>` each, model, version, digest."""
    from pipeline_lib.runtime.predictor import OnnxPredictor

    predictor = OnnxPredictor.from_dir(onnx_dir)
    rows = predictor.predict(texts["text"].tolist())
    pool = texts.copy()
    pool["label"] = [row["label"] for row in rows]
    for label in predictor.labels:
        pool[f"p_{label}"] = [row["probabilities"][label] for row in rows]
    pool["model"], pool["version"] = name, version
    pool["onnx_sha256"] = hashlib.sha256((onnx_dir / "model.onnx").read_bytes()).hexdigest()
    return pool


def stream(
    pool: pd.DataFrame,
    seed: int,
    days: int = 10,
    per_day: int = 60,
    tickers: tuple[str, ...] = TICKERS[:4],
    surge: tuple[str, int, int] | None = None,
) -> pd.DataFrame:
    """`days` daily windows per ticker of `per_day` texts drawn at random from `pool`; `surge=(ticker, day, n)`
    adds `n` texts that a human labelled negative to that ticker's day."""
    rng = np.random.default_rng(seed)
    cells = len(tickers) * days
    chosen = rng.choice(len(pool), cells * per_day)
    ticker = np.repeat(np.array(tickers, dtype=object), days * per_day)
    day = np.tile(np.repeat(np.arange(days), per_day), len(tickers))
    if surge:
        negatives = np.flatnonzero(pool["true_label"].to_numpy() == "negative")
        chosen = np.concatenate([chosen, rng.choice(negatives, surge[2])])
        ticker = np.concatenate([ticker, np.full(surge[2], surge[0], dtype=object)])
        day = np.concatenate([day, np.full(surge[2], surge[1])])
    frame = pool.iloc[chosen].drop(columns=["true_label"]).reset_index(drop=True)
    seconds = day * 86400 + rng.integers(0, 86400, len(frame))
    frame["published_at"] = pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")
    frame["ticker"] = ticker
    frame.insert(0, "id", [f"s{seed}-{i}" for i in range(len(frame))])
    frame["scored_at"] = pd.Timestamp(START + timedelta(days=days))
    return frame


def write_scored(frame: pd.DataFrame, folder: Path, parts: int = 3) -> Path:
    """`frame` as `tunepipe score` writes a scored folder: part files and a manifest naming the model."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        table = pa.Table.from_pandas(frame.iloc[chunk], preserve_index=False)
        pq.write_table(table, folder / f"part-stream-{index:06d}.parquet")
    first = frame.iloc[0]
    model = {"name": str(first["model"]), "version": str(first["version"]), "onnx_sha256": str(first["onnx_sha256"])}
    run = {"status": "complete", "models": [model], "rows_out": len(frame)}
    (folder / "manifest.json").write_text(json.dumps({"format": "tunepipe-scored/1", "runs": [run]}))
    return folder
