"""Progress of long work (training, evaluation, tokenizing a large split) that a user can see: a live bar (rich) in a
terminal, and outside one (logs, Prefect, CI) one log line at most every `output.progress_interval_s` seconds with
the same figures: done / total, rate, time left, and what the caller adds (epoch, samples/s)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pipeline_lib.config import OutputConfig

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def use_bar(output: OutputConfig) -> bool:
    return output.progress_bar == "always" or (output.progress_bar == "auto" and sys.stderr.isatty())


class ProgressReporter:
    """One piece of work of `total` units; call `advance` as units finish and `close` at the end."""

    def __init__(self, what: str, total: int, unit: str, output: OutputConfig) -> None:
        self.what, self.total, self.unit = what, max(int(total), 1), unit
        self.interval = output.progress_interval_s
        self.done, self.figures = 0, ""
        self.started = self.last = time.monotonic()
        self._bar: Any = None
        if use_bar(output):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(what, total=self.total, figures="")

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        left = (self.total - self.done) / self.rate if self.rate else float("nan")
        eta = _duration(left) if left == left else "?"
        extra = f", {self.figures}" if self.figures else ""
        return (
            f"{self.what}: {self.done}/{self.total} {self.unit} ({self.done / self.total:.0%}), "
            f"{self.rate:.2f} {self.unit}/s{extra}, ETA {eta}"
        )

    def advance(self, n: int = 1, figures: str = "") -> None:
        self.done = min(self.total, self.done + n)
        self.figures = figures or self.figures
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, figures=self.figures)
            return
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            log.info("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        log.info("%s (done in %s)", self.line().split(", ETA")[0], _duration(time.monotonic() - self.started))
