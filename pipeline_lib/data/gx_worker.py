"""Great Expectations on a spare core: one forked worker process imports GX (about 4 s on a 2-core machine, more than
half of what `tunepipe run` spends before its first step) while the command imports the training stack and decides
whether to retrain; the validate step then runs its expectation suites there (`run_suites`) and the worker exits.

Started only by a fresh command process (`start`: Linux's fork, at least two usable cores, neither Prefect nor GX
imported yet, so no other thread exists to be copied half-way); everywhere else (a library call, `tunepipe step
validate`, the tests, a DVC stage) the suites run in the calling process, with the same results.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from pipeline_lib.data.gx import import_gx
from pipeline_lib.hardware import usable_cores

T = TypeVar("T")

_worker: ProcessPoolExecutor | None = None


def _import_gx() -> int:
    import_gx()
    return os.getpid()


def start() -> bool:
    """Fork the worker and have it import GX now; False (and nothing started) where it would not help or not be safe:
    not Linux, one usable core, `TUNEPIPE_GX_WORKER=0`, or Prefect or GX already imported in this process."""
    global _worker
    if _worker is not None:
        return True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("TUNEPIPE_GX_WORKER", "1") == "0"
        or usable_cores() < 2
        or any(name in sys.modules for name in ("prefect", "great_expectations"))
    ):
        return False
    _worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    _worker.submit(_import_gx)  # forks now; the suites queue behind the import
    atexit.register(stop)
    return True


def started() -> bool:
    return _worker is not None


def run_suites(check: Callable[..., T], *args: Any) -> T:
    """`check(*args)` in the worker when one was started (then stopped: a run validates once), else here. An error
    raised there is raised here; a worker that died is replaced by running here."""
    if _worker is None:
        return check(*args)
    try:
        return _worker.submit(check, *args).result()
    except BrokenProcessPool:  # the worker process died (not the check failing): run here instead
        return check(*args)
    finally:
        stop()


def stop() -> None:
    """Let the worker go (it exits once idle); nothing when none was started."""
    global _worker
    if _worker is not None:
        _worker.shutdown(wait=False, cancel_futures=True)
    _worker = None
