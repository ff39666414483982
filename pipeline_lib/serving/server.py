"""Run `tunepipe serve` with uvicorn: one process, or `serve.workers` processes behind one port.

With one worker the app runs in this process. With several, uvicorn's supervisor starts that many processes
that each build the app from `worker_app` (the config, model reference and refresh period travel in the
environment; the token never in the config dump, see `ServeConfig.token`), each with its share of the cores as
onnxruntime threads, and their metrics are gathered through prometheus-client's multiprocess directory, a fresh
temporary folder unless `PROMETHEUS_MULTIPROC_DIR` is already set. TLS: `serve.ssl_certfile` and
`serve.ssl_keyfile` are handed to uvicorn as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline_lib.config import ConfigError, PipelineConfig
from pipeline_lib.registry import fast_lookup
from pipeline_lib.serving.http import TOKEN_ENV, ModelWatcher, create_app, serve_token
from pipeline_lib.serving.metrics import MULTIPROC_ENV

SPEC_ENV = "TUNEPIPE_SERVE_SPEC"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int | None:
    """onnxruntime threads for each of `workers` processes (None: onnxruntime's default, all cores)."""
    return None if workers <= 1 else max(1, usable_cores() // workers)


def uvicorn_options(cfg: PipelineConfig, host: str, port: int) -> dict[str, Any]:
    """uvicorn.run's keyword arguments from `serve:` (TLS files checked here, with a clear error)."""
    settings = cfg.serve
    for field in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(settings, field)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"serve.{field}: {path} is not a file; give the PEM file's path, or unset it")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,  # a log line per request costs more than a batched prediction
        "limit_concurrency": settings.max_connections,
    }
    if settings.ssl_certfile is not None:
        options.update(ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)
    return options


def serve_forever(cfg: PipelineConfig, model: str, host: str, port: int, refresh_s: float) -> None:
    """Serve `model` until SIGTERM or Ctrl-C (then every accepted request is answered and the log written)."""
    import uvicorn

    options = uvicorn_options(cfg, host, port)
    workers = cfg.serve.workers
    if workers == 1:
        app = create_app(ModelWatcher(cfg, model, refresh_s))
        uvicorn.run(app, **options)
        return
    fast_lookup.local_model(cfg, model)  # fail here, once, when the reference is wrong; the workers find it cached
    token = serve_token(cfg)
    if token:
        os.environ[TOKEN_ENV] = token
    made = None
    if not os.environ.get(MULTIPROC_ENV):
        made = tempfile.mkdtemp(prefix="tunepipe-metrics-")
        os.environ[MULTIPROC_ENV] = made
    os.environ[SPEC_ENV] = json.dumps(
        {
            "config": cfg.model_dump(mode="json"),
            "model": model,
            "refresh_s": refresh_s,
            "threads": threads_per_worker(workers),
        }
    )
    try:
        uvicorn.run("pipeline_lib.serving.server:worker_app", factory=True, workers=workers, **options)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory), from what `serve_forever` put in the environment."""
    spec = json.loads(os.environ[SPEC_ENV])
    cfg = PipelineConfig.model_validate(spec["config"])
    return create_app(ModelWatcher(cfg, spec["model"], spec["refresh_s"], num_threads=spec["threads"]))
