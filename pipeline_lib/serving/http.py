"""`tunepipe serve`: an HTTP endpoint (FastAPI + uvicorn) for a registered model reference such as
`financial-sentiment@champion`. The alias is re-resolved at most every `refresh_s` seconds on request, so a
promotion or rollback is served without a restart; while a new version loads, the old one keeps answering. Every
prediction is appended to the prediction log (`serving.prediction_log`) that `tunepipe monitor` reads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry import store
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.serving.prediction_log import PredictionLog

log = logging.getLogger(__name__)
LOG_FLUSH_S = 0.5  # the prediction log is written this often, off the request path


class PredictRequest(BaseModel):
    """The body of POST /predict."""

    texts: list[str] = Field(min_length=1, max_length=1024)


@dataclass
class Loaded:
    name: str
    version: str
    run_id: str | None
    predictor: OnnxPredictor
    loaded_at: float


class ModelWatcher:
    """The predictor for a model reference, reloaded when the alias points at another version."""

    def __init__(self, cfg: PipelineConfig, ref: str, refresh_s: float = 5.0) -> None:
        self.cfg = cfg
        self.ref = store.ModelRef.parse(ref)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self.loaded = self._load()  # fail at start-up, not on the first request, when the reference is wrong

    def _load(self) -> Loaded:
        client = store.connect(self.cfg)
        version = store.resolve(client, self.ref)
        folder = store.onnx_dir_for(self.cfg, client, version.name, str(version.version))
        self._checked = time.monotonic()
        log.info("serving %s/%s", version.name, version.version)
        return Loaded(version.name, str(version.version), version.run_id, OnnxPredictor.from_dir(folder), time.time())

    def current(self) -> Loaded:
        """The loaded model, after re-resolving the reference if the last check is older than `refresh_s`."""
        if time.monotonic() - self._checked < self.refresh_s:
            return self.loaded
        with self._lock:
            if time.monotonic() - self._checked >= self.refresh_s:
                try:
                    client = store.connect(self.cfg)
                    if str(store.resolve(client, self.ref).version) != self.loaded.version:
                        self.loaded = self._load()
                except Exception:  # registry unreachable or alias removed: keep serving what is loaded
                    log.exception("could not refresh %s; still serving v%s", self.ref, self.loaded.version)
                self._checked = time.monotonic()
        return self.loaded


def create_app(watcher: ModelWatcher, prediction_log: PredictionLog | None = None) -> Any:
    """The FastAPI app: POST /predict, GET /health, GET /version. Predictions are logged to `prediction_log`
    (default: the one `serve:` configures; none with `serve.log: false`)."""
    from fastapi import FastAPI, HTTPException

    predictions_log = prediction_log or PredictionLog.for_config(watcher.cfg, flush_s=LOG_FLUSH_S)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        if predictions_log is not None:  # on shutdown, write what is queued
            predictions_log.close()

    app = FastAPI(title="tunepipe", description=f"Predictions from {watcher.ref}", lifespan=lifespan)

    def describe(model: Loaded) -> dict[str, Any]:
        return {"model": str(watcher.ref), "name": model.name, "version": model.version, "run_id": model.run_id}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        model = watcher.current()
        try:
            rows = model.predictor.predict(request.texts)
        except (TypeError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        if predictions_log is not None:
            predictions_log.append(model.name, model.version, request.texts, rows)
        return {**describe(model), "predictions": [{k: v for k, v in r.items() if k != "text"} for r in rows]}

    @app.get("/health")
    def health() -> dict[str, Any]:
        folder = str(predictions_log.folder) if predictions_log is not None else None
        return {"status": "ok", **describe(watcher.loaded), "prediction_log": folder}

    @app.get("/version")
    def version() -> dict[str, Any]:
        model = watcher.current()
        return {**describe(model), "labels": model.predictor.labels, "loaded_at": model.loaded_at}

    return app
