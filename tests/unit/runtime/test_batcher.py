"""The dynamic batcher alone: real threads, a `run` function that records its batches."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline_lib.runtime.batcher import DynamicBatcher, Overloaded


class Recorder:
    """`run` for the batcher: answers `item * 10`, records each batch, can be held mid-batch and fail on an item."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


def held_batcher(recorder: Recorder, **kwargs) -> DynamicBatcher:
    """A batcher whose first batch (item -1) is held until `recorder.release` is set: what is submitted meanwhile
    queues up."""
    batcher = DynamicBatcher(recorder, **kwargs)
    recorder.release.clear()
    batcher.submit([-1])
    assert recorder.started.wait(5)
    return batcher


def test_each_caller_gets_its_own_results_in_order():
    recorder = Recorder()
    batcher = held_batcher(recorder, max_batch_size=64)
    futures = [batcher.submit([i, i + 100, i + 200]) for i in range(5)]
    recorder.release.set()
    assert [f.result(5) for f in futures] == [[i * 10, (i + 100) * 10, (i + 200) * 10] for i in range(5)]
    # the five requests queued behind the held batch ran as one batch, in arrival order
    assert recorder.batches[1] == [x for i in range(5) for x in (i, i + 100, i + 200)]
    batcher.close()


def test_batches_never_exceed_max_size_and_requests_are_never_split():
    recorder = Recorder()
    batcher = held_batcher(recorder, max_batch_size=4, max_wait_s=0)
    futures = [batcher.submit([i] * 3) for i in range(4)] + [batcher.submit(list(range(9)))]
    recorder.release.set()
    for f in futures:
        f.result(5)
    assert recorder.batches[1:] == [[0] * 3, [1] * 3, [2] * 3, [3] * 3, list(range(9))]
    batcher.close()


def test_concurrent_callers_are_merged_and_answered_exactly():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=16, max_wait_s=0.005)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: batcher.submit([i]).result(10), range(500)))
    assert results == [[i * 10] for i in range(500)]
    assert sorted(x for batch in recorder.batches for x in batch) == list(range(500))
    assert max(len(batch) for batch in recorder.batches) <= 16
    batcher.close()


def test_a_lone_request_on_an_idle_batcher_is_not_delayed():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=64, max_wait_s=30)  # a wait that would fail the test
    time.sleep(0.05)  # the worker is idle, waiting for requests
    assert batcher.submit([7]).result(timeout=5) == [70]
    assert batcher.submit([8]).result(timeout=5) == [80]
    batcher.close()


def test_a_request_sent_on_the_answer_is_not_delayed():
    """A closed-loop caller sends its next request as soon as it is answered, often before the worker thread gets
    the GIL back; that request found the queue non-empty and waited max_wait_s for company. Here it is sent from
    the answer's callback, on the worker thread itself, before the worker looks at the queue again."""
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=64, max_wait_s=30)  # a wait that would fail the test
    time.sleep(0.05)
    nxt: list = []
    first = batcher.submit([1])
    first.add_done_callback(lambda _: nxt.append(batcher.submit([2])))
    assert first.result(timeout=5) == [10]
    assert nxt[0].result(timeout=5) == [20]
    batcher.close()


def test_a_busy_batcher_waits_for_more_requests_to_fill_a_batch():
    recorder = Recorder()
    batcher = held_batcher(recorder, max_batch_size=3, max_wait_s=5)
    first = batcher.submit([1])
    recorder.release.set()
    assert recorder.started.wait(5)
    time.sleep(0.2)  # the batch of [1] is waiting for company (the worker found it queued, not idle)
    second = batcher.submit([2, 3])  # fills it: runs now, well before the 5 s wait
    assert first.result(5) == [10] and second.result(5) == [20, 30]
    assert recorder.batches[1] == [1, 2, 3]
    batcher.close()


def test_errors_go_to_their_own_caller_only():
    recorder = Recorder(fail_on=13)
    batcher = held_batcher(recorder, max_batch_size=64)
    good, bad, other = batcher.submit([1, 2]), batcher.submit([13]), batcher.submit([3])
    recorder.release.set()
    assert good.result(5) == [10, 20] and other.result(5) == [30]
    with pytest.raises(ValueError, match="bad item 13"):
        bad.result(5)
    batcher.close()


def test_a_full_queue_refuses_at_once_and_recovers():
    recorder = Recorder()
    batcher = held_batcher(recorder, max_batch_size=8, max_queue=4)
    accepted = [batcher.submit([i, i]) for i in range(2)]
    assert batcher.queued == 4
    with pytest.raises(Overloaded, match="queue full"):
        batcher.submit([99])
    recorder.release.set()
    assert [f.result(5) for f in accepted] == [[0, 0], [10, 10]]
    assert batcher.submit([5]).result(5) == [50]
    batcher.close()


def test_close_answers_everything_queued_then_refuses():
    recorder = Recorder()
    batcher = held_batcher(recorder, max_batch_size=2, max_wait_s=0)
    futures = [batcher.submit([i]) for i in range(6)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.1)
    with pytest.raises(Overloaded, match="shutting down"):
        batcher.submit([1])
    recorder.release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert [f.result(0) for f in futures] == [[i * 10] for i in range(6)]


def test_a_cancelled_caller_does_not_disturb_the_others():
    recorder = Recorder()
    batcher = held_batcher(recorder)
    gone, kept = batcher.submit([1]), batcher.submit([2])
    assert gone.cancel()
    recorder.release.set()
    assert kept.result(5) == [20]
    batcher.close()
