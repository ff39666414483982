"""`tunepipe serve`: an HTTP endpoint (FastAPI + uvicorn) for a registered model reference such as
`financial-sentiment@champion`.

- Concurrent requests are merged into predictor batches (`runtime.batcher`, `serve.max_batch_size`,
  `serve.max_batch_wait_ms`); each caller gets its own rows; an idle server answers a lone request at once.
- Limits answer at once instead of letting one client hold the server: the body (`serve.max_body_bytes`, 413
  before it is read), texts per request (`serve.max_texts`, 413), long texts (cut before tokenizing, or 422, per
  `serve.long_text`), the queue (`serve.max_queue` texts, 503 with Retry-After).
- With a token (`serve.token` or `TUNEPIPE_SERVE_TOKEN`), `/predict`, `/version` and `/metrics` need
  `Authorization: Bearer TOKEN` (compared in constant time; 401 otherwise); `/health` stays open for probes.
- `/metrics` in Prometheus' format (`serving.metrics`).
- The alias is re-resolved every `refresh_s` seconds by a background thread: a promotion or rollback is loaded
  while the old version keeps answering, and swapped in between batches, never inside one.
- Every prediction is appended to the prediction log (`serving.prediction_log`) that `tunepipe monitor` reads;
  on shutdown (SIGTERM) every accepted request is answered, then the log is flushed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry import fast_lookup, store
from pipeline_lib.runtime.batcher import DynamicBatcher, Overloaded
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.runtime.text_limits import LongTexts, TextTooLong
from pipeline_lib.serving.metrics import CONTENT_TYPE, ServeMetrics, process_exited
from pipeline_lib.serving.prediction_log import PredictionLog

log = logging.getLogger(__name__)
LOG_FLUSH_S = 0.5  # the prediction log is written this often, off the request path
TOKEN_ENV = "TUNEPIPE_SERVE_TOKEN"
OPEN_PATHS = frozenset({"/health"})  # answered without the token (probes)
ENDPOINTS = frozenset({"/predict", "/health", "/version", "/metrics"})


class PredictRequest(BaseModel):
    """The body of POST /predict."""

    texts: list[str] = Field(min_length=1)


@dataclass
class Loaded:
    name: str
    version: str
    run_id: str | None
    predictor: OnnxPredictor
    loaded_at: float
    long_texts: LongTexts


class ModelWatcher:
    """The predictor for a model reference; a background thread reloads it when the alias points at another
    version (`start`), and swaps `loaded` only once the new one is ready."""

    def __init__(self, cfg: PipelineConfig, ref: str, refresh_s: float = 5.0, num_threads: int | None = None) -> None:
        self.cfg = cfg
        self.ref = store.ModelRef.parse(ref)
        self.refresh_s = refresh_s
        self.num_threads = num_threads
        self.on_swap: Callable[[Loaded], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = self._load(str(self.ref))  # fail at start-up, not on the first request, when the ref is wrong

    def _load(self, reference: str) -> Loaded:
        local = fast_lookup.local_model(self.cfg, reference)
        found = local.registered
        predictor = OnnxPredictor.from_dir(local.folder, num_threads=self.num_threads)
        limits = LongTexts(local.folder, predictor.max_length, self.cfg.serve.long_text)
        log.info("serving %s/%s", found.name, found.version)
        return Loaded(found.name, found.version, found.run_id, predictor, time.time(), limits)

    def _registered_version(self) -> str:
        """The version the reference names now (read without MLflow where the store allows)."""
        try:
            found = fast_lookup.lookup(store.tracking_uri(self.cfg), self.ref)
            if found is not None:
                return found.version
        except fast_lookup.Unreadable:
            pass
        return str(store.resolve(store.connect(self.cfg), self.ref).version)

    def refresh(self) -> Loaded:
        """Re-resolve the reference now; load and swap in the version it names when that is another one."""
        try:
            version = self._registered_version()
            if version != self.loaded.version:
                self.loaded = self._load(f"{self.loaded.name}/{version}")  # one assignment: batches see old or new
                if self.on_swap is not None:
                    self.on_swap(self.loaded)
        except Exception:  # registry unreachable or alias removed: keep serving what is loaded
            log.exception("could not refresh %s; still serving v%s", self.ref, self.loaded.version)
        return self.loaded

    def start(self) -> None:
        """Re-resolve every `refresh_s` seconds in a background thread (until `close`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()

    def current(self) -> Loaded:
        return self.loaded


def serve_token(cfg: PipelineConfig) -> str | None:
    """The bearer token: `serve.token`, else `TUNEPIPE_SERVE_TOKEN`, else none (no authentication)."""
    if cfg.serve.token is not None and cfg.serve.token.get_secret_value():
        return cfg.serve.token.get_secret_value()
    return os.environ.get(TOKEN_ENV) or None


class Guard:
    """ASGI middleware in front of the app: the token, the body limit (both before the body is read), and the
    request metrics (status and latency of everything answered, refusals included)."""

    def __init__(self, app: Any, token: str | None, max_body_bytes: int, metrics: ServeMetrics) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        start = time.perf_counter()
        status = 500

        async def send_counted(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            headers = dict(scope["headers"])
            if self.token is not None and path not in OPEN_PATHS and not self._authorized(headers):
                self.metrics.rejected.labels("unauthorized").inc()
                headers_out = {"www-authenticate": "Bearer", "connection": "close"}  # its body is never read
                await _json(send_counted, 401, "missing or wrong bearer token", headers_out)
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                self.metrics.rejected.labels("body_too_large").inc()
                await _json(send_counted, 413, self._too_large(), {"connection": "close"})
                return
            await self.app(scope, self._limited(receive), send_counted)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token or b"")

    def _too_large(self) -> str:
        return f"request body over serve.max_body_bytes={self.max_body_bytes}; send fewer or shorter texts"

    def _limited(self, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
        """`receive` that stops a body without Content-Length once it passes the limit."""
        from fastapi import HTTPException

        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    self.metrics.rejected.labels("body_too_large").inc()
                    raise HTTPException(413, self._too_large(), headers={"connection": "close"})
            return message

        return limited


async def _json(send: Callable, status: int, detail: str, headers: dict[str, str]) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def create_app(watcher: ModelWatcher, prediction_log: PredictionLog | None = None) -> Any:
    """The FastAPI app: POST /predict, GET /health, GET /version, GET /metrics. Predictions are logged to
    `prediction_log` (default: the one `serve:` configures; none with `serve.log: false`)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse, Response

    settings = watcher.cfg.serve
    predictions_log = prediction_log or PredictionLog.for_config(watcher.cfg, flush_s=LOG_FLUSH_S)
    metrics = ServeMetrics()

    def run_batch(texts: list[str]) -> list[tuple[Loaded, dict[str, Any]]]:
        model = watcher.loaded  # read once: a new version is swapped in between batches, never inside one
        rows = model.predictor.predict(texts, batch_size=settings.max_batch_size)
        metrics.texts.inc(len(texts))
        return [(model, row) for row in rows]

    def on_batch(texts: int, requests: int) -> None:
        metrics.batch_texts.observe(texts)
        metrics.batch_requests.observe(requests)
        metrics.queue.set(batcher.queued)

    def on_swap(model: Loaded) -> None:
        metrics.model_version.labels(model.name).set(_numeric(model.version))

    batcher: DynamicBatcher[str, tuple[Loaded, dict[str, Any]]] = DynamicBatcher(
        run_batch,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=on_batch,
        name="predict-batches",
    )
    watcher.on_swap = on_swap
    on_swap(watcher.loaded)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        watcher.start()
        yield
        # uvicorn has stopped accepting and answered every request in flight: finish, then write the log
        watcher.close()
        batcher.close()
        if predictions_log is not None:
            predictions_log.close()
        process_exited()

    app = FastAPI(title="tunepipe", description=f"Predictions from {watcher.ref}", lifespan=lifespan)
    app.add_middleware(Guard, token=serve_token(watcher.cfg), max_body_bytes=settings.max_body_bytes, metrics=metrics)

    def describe(model: Loaded) -> dict[str, Any]:
        return {"model": str(watcher.ref), "name": model.name, "version": model.version, "run_id": model.run_id}

    @app.post("/predict")
    async def predict(request: PredictRequest) -> Any:
        if len(request.texts) > settings.max_texts:
            metrics.rejected.labels("too_many_texts").inc()
            raise HTTPException(413, f"{len(request.texts)} texts, over serve.max_texts={settings.max_texts}")
        try:
            texts = watcher.loaded.long_texts.prepare(request.texts)
        except TextTooLong as exc:
            metrics.rejected.labels("text_too_long").inc()
            raise HTTPException(422, str(exc)) from exc
        with metrics.in_flight.track_inprogress():
            return await answer(request.texts, texts)

    async def answer(texts_given: list[str], texts: list[str]) -> Any:
        try:
            future = batcher.submit(texts)
        except Overloaded as exc:
            metrics.rejected.labels("overloaded").inc()
            retry = str(max(1, math.ceil(exc.retry_after_s)))
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": retry})
        metrics.queue.set(batcher.queued)
        try:
            results = await asyncio.wrap_future(future)
        except (TypeError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        model = results[0][0]  # a request is never split: all its rows come from one batch, one model
        rows = [row for _, row in results]
        if predictions_log is not None:
            predictions_log.append(model.name, model.version, texts_given, rows)
        predictions = [{k: v for k, v in r.items() if k != "text"} for r in rows]
        return JSONResponse({**describe(model), "predictions": predictions})  # plain JSON types: no re-encoding

    @app.get("/health")
    def health() -> dict[str, Any]:
        folder = str(predictions_log.folder) if predictions_log is not None else None
        return {"status": "ok", **describe(watcher.loaded), "prediction_log": folder}

    @app.get("/version")
    def version() -> dict[str, Any]:
        model = watcher.loaded
        return {**describe(model), "labels": model.predictor.labels, "loaded_at": model.loaded_at}

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        metrics.queue.set(batcher.queued)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return app


def _numeric(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return float("nan")
