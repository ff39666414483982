"""Opportunistic (dynamic) batching: many callers' small requests merged into one predictor batch.

Pure (a thread, a queue, futures; no HTTP, no model): `DynamicBatcher(run)` calls `run(items)` on one worker
thread with the items of every request queued since the last batch, in arrival order, up to `max_batch_size`
items, and hands each caller exactly its own slice of the results. A request is never split: one larger than
`max_batch_size` runs alone (`run` chunks it itself).

When to close a batch. A batch starts as soon as the worker is free and a request is queued. If its oldest
request arrived after the previous batch had finished (the server was idle), the batch runs at once: a lone
request gets no added delay. If it arrived while the previous batch ran (traffic is arriving faster than batches
run), the batch waits up to `max_wait_s` for more to fill it, then runs with what it has. "After the previous batch
had finished" is decided by a count of finished batches taken when the request is queued, not by whether the
worker found the queue empty when it came back: a caller answered by the last batch often sends its next request
before the worker thread gets the GIL back, and that request must not wait for company.

Errors stay with their callers: when a merged batch raises, each of its requests is run again alone, so one bad
request fails only its own future. The queue is bounded (`max_queue` items): `submit` raises `Overloaded` at
once instead of letting latency grow without bound.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full (or the batcher is closing): try again later."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class _Request(Generic[T, R]):
    items: list[T]
    future: Future[list[R]] = field(default_factory=Future)
    generation: int = 0  # batches finished when it was queued


class DynamicBatcher(Generic[T, R]):
    """Merge concurrent `submit`s into `run` calls on one worker thread (see the module's docstring)."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 64,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        on_batch: Callable[[int, int], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and max_wait_s >= 0")
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with (items, requests) of each batch before it runs
        self._queue: deque[_Request[T, R]] = deque()
        self._queued = 0  # items waiting (not yet in a running batch)
        self._finished = 0  # batches run so far (bumped before their callers are answered)
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return self._queued

    def submit(self, items: Sequence[T]) -> Future[list[R]]:
        """Queue one request; its future resolves to `run`'s results for exactly these items, in order (or to the
        exception its own items raise). Raises `Overloaded` when the queue cannot take it."""
        request: _Request[T, R] = _Request(list(items))
        if not request.items:
            request.future.set_result([])
            return request.future
        with self._cond:
            if self._closed:
                raise Overloaded("shutting down: not accepting new requests")
            if self._queued and self._queued + len(request.items) > self.max_queue:
                raise Overloaded(f"queue full: {self._queued} items waiting (limit {self.max_queue})")
            request.generation = self._finished
            self._queue.append(request)
            self._queued += len(request.items)
            self._cond.notify()
        return request.future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting requests, answer every queued one, stop the worker (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request[T, R]] | None:
        """The requests of the next batch (None: closed and drained)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            busy = batch[0].generation < self._finished  # it was queued while the previous batch ran
            size = len(batch[0].items)
            size = self._take(batch, size)
            if busy and self.max_wait_s > 0 and size < self.max_batch_size:
                deadline = time.monotonic() + self.max_wait_s
                while size < self.max_batch_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    size = self._take(batch, size)
            self._queued -= size
            return batch

    def _take(self, batch: list[_Request[T, R]], size: int) -> int:
        """Move queued requests into `batch` while they fit; the batch's new size."""
        while self._queue and size + len(self._queue[0].items) <= self.max_batch_size:
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.items)
        return size

    def _run(self, batch: list[_Request[T, R]]) -> None:
        items = [item for request in batch for item in request.items]
        if self.on_batch is not None:
            try:
                self.on_batch(len(items), len(batch))
            except Exception:  # metrics must never fail a batch
                log.exception("on_batch callback failed")
        outcomes: list[tuple[Any, BaseException | None]]
        try:
            results = self._checked(items)
        except Exception as exc:  # one request: its error; several: find whose items fail, each request alone
            outcomes = [(None, exc)] if len(batch) == 1 else [self._alone(request.items) for request in batch]
        else:
            ends = list(itertools.accumulate(len(request.items) for request in batch))
            outcomes = [
                (results[end - len(request.items) : end], None) for request, end in zip(batch, ends, strict=True)
            ]
        with self._cond:  # finished before its callers hear of it: what they send next finds the worker idle
            self._finished += 1
        for request, (result, error) in zip(batch, outcomes, strict=True):
            _settle(request.future, result, error)

    def _alone(self, items: list[T]) -> tuple[Any, BaseException | None]:
        """One request's items run as a batch of their own: (results, None) or (None, its error)."""
        try:
            return self._checked(items), None
        except Exception as own:
            return None, own

    def _checked(self, items: list[T]) -> list[R]:
        results = list(self.run(items))
        if len(results) != len(items):
            raise RuntimeError(f"run returned {len(results)} results for {len(items)} items")
        return results


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Resolve `future`, unless its caller has cancelled it meanwhile (a client that went away)."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
