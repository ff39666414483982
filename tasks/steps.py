"""Thin Prefect tasks: each runs one `pipeline_lib` step and returns its small result dict."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir
from pipeline_lib.steps import run_step, summarize


def _run(name: str, cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    start = time.perf_counter()
    result = run_step(name, cfg, run).to_dict()
    get_run_logger().info("[%s] %.1fs  %s", name, time.perf_counter() - start, summarize(name, result))
    return result


@task(name="validate", cache_policy=NO_CACHE)
def validate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("validate", cfg, run)


@task(name="tokenize", cache_policy=NO_CACHE)
def tokenize(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("tokenize", cfg, run)


@task(name="train", cache_policy=NO_CACHE)
def train(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("train", cfg, run)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("evaluate", cfg, run)


@task(name="export", cache_policy=NO_CACHE)
def export(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("export", cfg, run)


@task(name="gate", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def gate(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("gate", cfg, run)


@task(name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register(cfg: PipelineConfig, run: RunDir) -> dict[str, Any]:
    return _run("register", cfg, run)
