"""`GET /metrics` of `tunepipe serve`, in Prometheus' text format (prometheus-client).

Requests by endpoint and status, request latency, batch sizes, the queue's depth, requests refused by a limit
(and which) and the served model's version. With several worker processes (`serve.workers > 1`) every process
writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode, which `serve`
sets up before the workers start) and `/metrics`, whichever worker answers it, adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def multiprocess() -> bool:
    """Whether this process writes its metrics for a multiprocess collector."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServeMetrics:
    """The server's metrics, registered in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tunepipe_requests", "HTTP requests answered, by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "tunepipe_request_seconds", "Time to answer a request", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_texts = Histogram(
            "tunepipe_batch_texts", "Texts per predictor batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "tunepipe_batch_requests", "Requests merged into one predictor batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.texts = Counter("tunepipe_predicted_texts", "Texts predicted", registry=r)
        self.queue = Gauge("tunepipe_queue_texts", "Texts waiting for a batch", multiprocess_mode="livesum", registry=r)
        self.in_flight = Gauge(
            "tunepipe_in_flight_requests",
            "Prediction requests accepted and not yet answered",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.rejected = Counter(
            "tunepipe_rejected_requests",
            "Requests refused by a limit: body_too_large, too_many_texts, text_too_long, overloaded, unauthorized",
            ["reason"],
            registry=r,
        )
        self.model_version = Gauge(
            "tunepipe_model_version",
            "Version of the registered model being served",
            ["model"],
            multiprocess_mode="livemax",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format of every metric (all worker processes' in multiprocess mode)."""
        if multiprocess():
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def process_exited(pid: int | None = None) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if multiprocess():
        prometheus_multiprocess.mark_process_dead(pid or os.getpid())
