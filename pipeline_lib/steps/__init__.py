"""The pipeline's steps, one module each, in the order the flow runs them: `decide` (retrain or skip), then
`validate → tokenize → train → export → evaluate → gate → register`. Each step is `step(cfg, run) -> result`,
callable from Python, the CLI (`tunepipe step NAME`), a Prefect task or a DVC stage; steps pass files through the
run directory (`layout.RunDir`), not objects. A step module exposes its step function and result, and composes
the packages below it (data, task_types, training, runtime, gates, registry, report); `cache` keys the cacheable
steps on content hashes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import RunDir, read_json

# Resolved lazily so `tunepipe step validate` does not pay for importing torch or MLflow.
STEPS: dict[str, str] = {
    "validate": "pipeline_lib.steps.validate:validate",
    "tokenize": "pipeline_lib.steps.tokenize:tokenize",
    "train": "pipeline_lib.steps.train:train",
    "export": "pipeline_lib.steps.export:export",
    "evaluate": "pipeline_lib.steps.evaluate:evaluate",
    "gate": "pipeline_lib.steps.gate:gate",
    "register": "pipeline_lib.steps.register:register",
}


def step_function(name: str) -> Callable[[PipelineConfig, RunDir], Any]:
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    module, func = STEPS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_step(name: str, cfg: PipelineConfig, run: RunDir) -> Any:
    apply_quiet_env()
    return step_function(name)(cfg if name == "validate" else with_inferred_labels(cfg, run), run)


def with_inferred_labels(cfg: PipelineConfig, run: RunDir) -> PipelineConfig:
    """`cfg` with the labels the validate step inferred into `run` (when the config names none), so that every
    later step, however it is run, uses the same labels in the same order."""
    if cfg.data.labels or cfg.data.inferred_labels or not run.validation_report.is_file():
        return cfg
    labels = read_json(run.validation_report).get("labels")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"inferred_labels": labels})})


def summarize(name: str, result: dict[str, Any]) -> str:
    """One line of the figures that matter for each step's result."""
    picks = {
        "validate": lambda r: f"rows {r.get('rows')}",
        "tokenize": lambda r: (
            f"cache {'hit' if r['cache_hit'] else 'miss'} ({r['cache_key'][:10]}), tokens {r['tokens']}"
        ),
        "train": lambda r: (
            f"{r['global_step']} steps, {r['epochs_run']} epochs, best epoch {r['best_epoch']} "
            f"({r['metric_for_best_model']}={_fmt(r['best_metric'])}), {r['precision']} on {r['device']}, "
            f"{r['train_samples_per_second']} samples/s"
        ),
        "evaluate": lambda r: " ".join(
            f"{k}={_fmt(r['metrics'][k])}" for k in ("accuracy", "macro_f1", "entity_f1") if k in r["metrics"]
        ),
        "export": lambda r: (
            f"{r['size_mb']:.1f} MB, max|dlogit| {r['max_abs_logit_diff']:.1e}, agreement {r['agreement']:.4f}"
        ),
        "gate": lambda r: (
            "PASSED" if r["passed"] else "REFUSED: " + ", ".join(c["name"] for c in r["checks"] if not c["passed"])
        ),
        "register": lambda r: f"{r['name']} v{r['version']} -> @{r['alias']} ({r['reason']})",
    }
    try:
        return picks[name](result)
    except (KeyError, TypeError):
        return ""


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
