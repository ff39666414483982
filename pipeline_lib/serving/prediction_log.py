"""The prediction log of `tunepipe serve`: one record per prediction, appended to SQLite files in one folder.

A record holds the time (UTC), the model name and version, the SHA-256 and length (characters, words) of the text,
the predicted label and its probability; the raw text only with `serve.log_texts: true`. Records are written to
`current.sqlite`, one transaction per flush (`serve` flushes every half second, off the request path), so
`tunepipe monitor` sees them whether or not the server still runs. When that file reaches `serve.log_rotate_mb`
it is renamed `predictions-<UTC time>-<random>.sqlite` and a new one is started; only the `serve.log_keep` newest
rotated files are kept. Writers in several processes (uvicorn workers, two servers on one folder) take an OS file
lock beside the files for each write and rotation; readers take it shared.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import ConfigError, PipelineConfig, ServeConfig

log = logging.getLogger(__name__)

CURRENT = "current.sqlite"
ROTATED_GLOB = "predictions-*.sqlite"
LOCK = ".lock"
COLUMNS = ("time", "model", "version", "text_sha256", "chars", "words", "label", "confidence", "text")
_SCHEMA = """CREATE TABLE IF NOT EXISTS predictions (
    time REAL NOT NULL,           -- seconds since the epoch, UTC
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    chars INTEGER NOT NULL,
    words INTEGER NOT NULL,
    label TEXT,                   -- NULL for token classification (entities, no label)
    confidence REAL,              -- top probability; token classification: the lowest entity score
    text TEXT                     -- NULL unless serve.log_texts
)"""


def log_folder(cfg: PipelineConfig) -> Path:
    """Where the prediction log lives: `serve.log_path`, else `<paths.store>/predictions`."""
    folder = cfg.serve.log_path if cfg.serve.log_path is not None else Path(cfg.paths.store) / "predictions"
    return Path(folder).resolve()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def records(
    name: str, version: str, texts: Sequence[str], predictions: Sequence[dict[str, Any]], *, keep_text: bool, at: float
) -> list[tuple[Any, ...]]:
    """One row per prediction, in `COLUMNS` order (a prediction as `OnnxPredictor.predict` returns it)."""
    rows = []
    for text, prediction in zip(texts, predictions, strict=True):
        if "probabilities" in prediction:
            label, confidence = prediction["label"], max(prediction["probabilities"].values())
        else:  # token classification: entities with scores
            label, scores = None, [entity["score"] for entity in prediction.get("entities", [])]
            confidence = min(scores) if scores else None
        row = (at, name, version, text_sha256(text), len(text), len(text.split()), label, confidence)
        rows.append((*row, text if keep_text else None))
    return rows


class PredictionLog:
    """Appends prediction records to the folder's current file, rotating it by size.

    With `flush_s` > 0 (what `serve` uses) `append` only queues the records and a background thread writes what
    has queued every `flush_s` seconds, in one transaction: a request never waits for the disk (a synchronous
    SQLite commit costs it 5-15 ms here). `close` (on server shutdown, and at exit) writes what is left; a killed
    process loses at most the last `flush_s` seconds. With `flush_s` = 0 each `append` is written before it
    returns.
    """

    def __init__(self, folder: Path, settings: ServeConfig, flush_s: float = 0.0) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.flush_s = flush_s
        self._thread_lock = threading.Lock()
        try:  # fail at start-up, not on the first request, when the folder is not writable
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._locked():
                self._connect(self.folder / CURRENT).close()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"serve.log_path: cannot write the prediction log in {self.folder} ({exc}); set serve.log_path to a "
                "writable folder, or serve.log: false to keep no log"
            ) from exc
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        if flush_s > 0:
            self._writer = threading.Thread(target=self._write_every, name="prediction-log", daemon=True)
            self._writer.start()
            atexit.register(self.close)

    @classmethod
    def for_config(cls, cfg: PipelineConfig, flush_s: float = 0.0) -> PredictionLog | None:
        """The configured log, or None with `serve.log: false`."""
        return cls(log_folder(cfg), cfg.serve, flush_s) if cfg.serve.log else None

    def append(self, name: str, version: str, texts: Sequence[str], predictions: Sequence[dict[str, Any]]) -> int:
        """Record one request's predictions; returns how many records it makes."""
        rows = records(name, version, texts, predictions, keep_text=self.settings.log_texts, at=_now())
        if self._writer is None:
            self._write(rows)
        else:
            with self._pending_lock:
                self._pending.extend(rows)
        return len(rows)

    def flush(self) -> int:
        """Write the queued records now; how many were written (0 when the disk refused them, which is logged)."""
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            self._write(rows)
        except (OSError, sqlite3.Error):  # a full disk must not stop the server: say so loudly, keep serving
            log.exception("could not write %d predictions to the log in %s", len(rows), self.folder)
            return 0
        return len(rows)

    def close(self) -> None:
        """Stop the background writer after writing what is queued (idempotent)."""
        self._stop.set()
        if self._writer is not None and self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join(timeout=30)
        self.flush()

    def _write_every(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self._locked():
            current = self.folder / CURRENT
            connection = self._connect(current)
            try:
                with connection:
                    placeholders = ", ".join("?" * len(COLUMNS))
                    connection.executemany(
                        f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
                    )
            finally:
                connection.close()
            if current.stat().st_size >= self.settings.log_rotate_mb * 1024 * 1024:
                self._rotate(current)

    def _rotate(self, current: Path) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        current.rename(self.folder / f"predictions-{stamp}-{secrets.token_hex(3)}.sqlite")
        for old in rotated_files(self.folder)[: -self.settings.log_keep]:
            old.unlink(missing_ok=True)
        log.info("prediction log rotated in %s", self.folder)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=30)
        connection.execute(_SCHEMA)
        return connection

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other processes on the same folder, one at a time."""
        with self._thread_lock, folder_lock(self.folder, exclusive=True):
            yield


@contextmanager
def folder_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """The folder's OS file lock: exclusive to append or rotate, shared to read (no rotation mid-read)."""
    with (folder / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rotated_files(folder: Path) -> list[Path]:
    """Rotated files, oldest first (their names start with the UTC time of rotation)."""
    return sorted(folder.glob(ROTATED_GLOB))


def read_log(folder: Path, since: datetime | None = None) -> pd.DataFrame:
    """Every record in the folder (rotated files and the current one) at or after `since`, oldest first; `time`
    as UTC timestamps. An empty frame with the log's columns when there is none."""
    folder = Path(folder)
    query, params = "SELECT * FROM predictions", ()
    if since is not None:
        query, params = f"{query} WHERE time >= ?", (since.timestamp(),)
    frames = []
    with folder_lock(folder, exclusive=False):
        for path in [*rotated_files(folder), folder / CURRENT]:
            if path.is_file():
                frames.append(_read_file(path, query, params))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    return frame


def _read_file(path: Path, query: str, params: tuple[Any, ...]) -> pd.DataFrame:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return pd.read_sql_query(query, connection, params=params)
    finally:
        connection.close()


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()
