"""Talking to a tracking server that may go away: bounded client-side HTTP retries, a bounded retry loop
with back-off for whole registration attempts, and one clear error when the server stays unreachable."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline_lib.config import RegistryConfig
from pipeline_lib.registry.errors import RegistryUnavailable

T = TypeVar("T")
# MLflow's defaults (7 retries, back-off factor 2, 120 s timeout) hang a run for minutes on a dead server.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": lambda reg: reg.http_retries,
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": lambda reg: 1,
    "MLFLOW_HTTP_REQUEST_TIMEOUT": lambda reg: reg.http_timeout_s,
}
_OURS: dict[str, str] = {}  # what tunepipe set (a user's own setting is never overwritten)
_UNREACHABLE_MARKERS = (
    "max retries exceeded",
    "connection refused",
    "connection aborted",
    "connection reset",
    "remote end closed connection",
    "failed to establish a new connection",
    "timeout exception",
    "read timed out",
    "too many 5",  # urllib3: too many 502/503/504 error responses
)


def bound_http_retries(reg: RegistryConfig) -> None:
    """Bound the MLflow client's own per-request retries and timeout, unless the user set them."""
    for key, value in _HTTP_ENV.items():
        if key in os.environ and os.environ[key] != _OURS.get(key):
            continue
        os.environ[key] = _OURS[key] = str(value(reg))


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the server could not be reached or did not answer."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
            return True
        if any(marker in str(seen).lower() for marker in _UNREACHABLE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_unreachable(
    attempt: Callable[[int], T],
    *,
    retries: int,
    wait_s: float,
    on_give_up: Callable[[int, BaseException], RegistryUnavailable],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt(n)` for n = 1..retries+1 while it fails because the server is unreachable, waiting
    wait_s, 2·wait_s, ... in between; any other error is raised at once. When every attempt failed, raise
    `on_give_up(attempts, last_error)`."""
    for number in range(1, retries + 2):
        try:
            return attempt(number)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if number > retries:
                raise on_give_up(number, exc) from exc
            sleep(wait_s * 2 ** (number - 1))
    raise AssertionError("unreachable")  # pragma: no cover
