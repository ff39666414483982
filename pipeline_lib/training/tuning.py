"""The hyper-parameter search's own pieces (Optuna; no MLflow, no Prefect): the study in RDB storage with its seeded
TPE sampler and pruner, what a trial draws from `tune.space` and the config it trains with, the Trainer callback
that reports each validation pass to the trial and stops a pruned one, recovery of trials whose worker died, and the
overlay (`configs/tuned/NAME.yaml`) written from the best trial. `commands.tune` runs trials with these.

Trial params are named by the config fields they set (`train.learning_rate`), so a trial's params are its overlay;
`train.adaptation` stands for `train.freeze` and `train.lora.enabled` together (`config.ADAPTATIONS`). Parameters
that only matter for one adaptation (`train.lora.*` for lora, `train.trainable_top_layers` for top_k) are drawn
only in trials of that adaptation.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from pipeline_lib.config import (
    ADAPTATIONS,
    ConfigError,
    PipelineConfig,
    SearchParam,
    TunedFrom,
    check_search_value,
    with_layer,
)

STORAGE_ENV = "TUNEPIPE_OPTUNA_STORAGE"  # team mode: a PostgreSQL URL shared by every worker
ADAPTATION = "train.adaptation"
# parameters drawn only in trials of one adaptation
CONDITIONAL = {"train.trainable_top_layers": "top_k", "train.lora.r": "lora", "train.lora.alpha": "lora"}
CONDITIONAL |= {"train.lora.dropout": "lora"}


class TuneError(RuntimeError):
    """The search cannot start or continue as asked; the message says why and what to do."""


def study_name(cfg: PipelineConfig) -> str:
    return cfg.tune.study or cfg.registry.model_name


def storage_url(cfg: PipelineConfig) -> str:
    """`tune.storage`, else $TUNEPIPE_OPTUNA_STORAGE, else a sqlite file beside the local MLflow store."""
    if cfg.tune.storage:
        return cfg.tune.storage
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    store = Path(cfg.paths.store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'optuna.db'}"


def masked(url: str) -> str:
    """The storage URL without its password (for logs, tags and overlays)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def direction(cfg: PipelineConfig) -> str:
    return "minimize" if cfg.train.metric_for_best_model == "loss" else "maximize"


def storage(cfg: PipelineConfig) -> Any:
    """Optuna's RDB storage with a heartbeat: a trial whose worker stops beating for 2x `tune.heartbeat_s` is failed
    by the next worker's start of a trial and run again with the same params (once)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = storage_url(cfg)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    beat = cfg.tune.heartbeat_s
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat, stable since Optuna 2.8
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=beat,
                grace_period=2 * beat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except Exception as exc:  # a bad URL, an unreachable server, a missing driver
        raise TuneError(f"tune.storage {masked(url)}: cannot open the Optuna storage ({exc})") from exc


def sampler(cfg: PipelineConfig, offset: int = 0) -> Any:
    """Seeded TPE. `offset` (trials already in the study, plus the worker's index) keeps a resumed or parallel
    worker from drawing the startup trials another one already drew."""
    from optuna.samplers import TPESampler

    return TPESampler(seed=cfg.tune.sampler_seed + offset, n_startup_trials=cfg.tune.startup_trials)


def pruner(cfg: PipelineConfig) -> Any:
    """Median or Hyperband pruning on the per-epoch validation metric (step k = the k-th validation pass)."""
    from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner

    tune = cfg.tune
    if tune.pruner == "median":
        return MedianPruner(n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=tune.pruner_warmup_epochs)
    if tune.pruner == "hyperband":
        return HyperbandPruner(min_resource=max(1, tune.pruner_warmup_epochs), max_resource=max_epochs(cfg))
    return NopPruner()


def max_epochs(cfg: PipelineConfig) -> int:
    """The most validation passes a trial can have: the top of the epochs range, else the base config's epochs."""
    param = cfg.tune.space.get("train.epochs")
    top = max(param.endpoints) if param is not None else cfg.train.epochs
    return max(1, int(-(-float(top) // 1)))


def open_study(cfg: PipelineConfig, worker: int = 0, create: bool = True) -> Any:
    """The study `study_name(cfg)` (created when `create`, else TuneError when missing), with its sampler seeded
    past the trials it already has."""
    import optuna

    name, store = study_name(cfg), storage(cfg)
    if not create and name not in {s.study_name for s in optuna.get_all_study_summaries(store)}:
        raise TuneError(f"no study {name!r} in {masked(storage_url(cfg))}: run `tunepipe tune --name {name}` first")
    study = optuna.create_study(study_name=name, storage=store, direction=direction(cfg), load_if_exists=True)
    if study.direction.name.lower() != direction(cfg):
        raise TuneError(
            f"study {name!r} {study.direction.name.lower()}s, but train.metric_for_best_model="
            f"{cfg.train.metric_for_best_model} asks to {direction(cfg)}: use another --name"
        )
    offset = len(study.trials) + worker
    return optuna.load_study(study_name=name, storage=store, sampler=sampler(cfg, offset), pruner=pruner(cfg))


def search_key(cfg: PipelineConfig) -> str:
    """What must stay the same for a study to continue: task, data settings, model, the training settings that are
    not searched, the space and the metric. A change needs another study (`--name`)."""
    dumped = cfg.model_dump(mode="json", include={"task", "data", "model", "train", "tune"})
    dumped["data"].pop("inferred_labels", None)
    searched = set(cfg.tune.space) | ({"train.freeze", "train.lora.enabled"} if ADAPTATION in cfg.tune.space else set())
    for key in searched:
        node, *path, last = key.split(".")
        parent = dumped[node]
        for part in path:
            parent = parent[part]
        parent.pop(last, None)
    dumped["tune"] = {"space": dumped["tune"]["space"]}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def current_adaptation(cfg: PipelineConfig) -> str:
    return "lora" if cfg.train.lora.enabled else {"none": "full"}.get(cfg.train.freeze, cfg.train.freeze)


def _is_int(key: str, param: SearchParam) -> bool:
    if param.type != "auto":
        return param.type == "int"
    value = check_search_value(key, param.low)
    return isinstance(value, int) and not isinstance(value, bool)


def suggest(trial: Any, cfg: PipelineConfig) -> dict[str, Any]:
    """Draw this trial's params from `tune.space` (fixed values for an enqueued trial)."""
    space = cfg.tune.space
    params: dict[str, Any] = {}
    adaptation = current_adaptation(cfg)
    if ADAPTATION in space:
        adaptation = params[ADAPTATION] = trial.suggest_categorical(ADAPTATION, space[ADAPTATION].choices)
    for key, param in space.items():
        if key == ADAPTATION or CONDITIONAL.get(key, adaptation) != adaptation:
            continue
        if param.choices is not None:
            params[key] = trial.suggest_categorical(key, param.choices)
        elif _is_int(key, param):
            step = int(param.step or 1)
            params[key] = trial.suggest_int(key, int(param.low), int(param.high), step=step, log=param.log)
        else:
            params[key] = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
    return params


def overlay_of(params: dict[str, Any]) -> dict[str, Any]:
    """Trial params as a config layer: `{"train": {"learning_rate": ..., "freeze": ..., "lora": {...}}}`."""
    layer: dict[str, Any] = {}
    for key, value in sorted(params.items()):
        if key == ADAPTATION:
            train = layer.setdefault("train", {})
            for field, setting in ADAPTATIONS[value].items():
                train[field] = {**train.get(field, {}), **setting} if isinstance(setting, dict) else setting
            continue
        node = layer
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return layer


def trial_config(cfg: PipelineConfig, params: dict[str, Any], parallel: int = 1) -> PipelineConfig:
    """The config one trial trains with: the base, its params, never resuming; with `parallel` trials at once on
    one machine each gets its share of the cores (unless train.num_threads says)."""
    layer = overlay_of(params)
    train = layer.setdefault("train", {})
    train["resume"] = False
    if parallel > 1 and cfg.train.num_threads is None:
        train["num_threads"] = max(1, (os.cpu_count() or 1) // parallel)
    return with_layer(cfg, layer)


def baseline(cfg: PipelineConfig) -> dict[str, Any]:
    """The base config's own values of the searched params, those that lie in the space (trial 0's params)."""
    dumped = cfg.model_dump(mode="json")
    adaptation = current_adaptation(cfg)
    values: dict[str, Any] = {}
    for key, param in cfg.tune.space.items():
        if key == ADAPTATION:
            value: Any = adaptation
        elif CONDITIONAL.get(key, adaptation) != adaptation:
            continue
        else:
            value = dumped
            for part in key.split("."):
                value = value[part]
            if param.choices is None and _is_int(key, param):
                if float(value) != int(value):
                    continue
                value = int(value)
        inside = value in param.choices if param.choices is not None else param.low <= value <= param.high
        if inside:
            values[key] = value
    return values


def enqueue_first(study: Any, cfg: PipelineConfig) -> int:
    """Queue the baseline (when `tune.baseline_first`) and `tune.enqueue`'s trials; how many were queued."""
    queued = [("baseline", baseline(cfg))] if cfg.tune.baseline_first else []
    queued += [(f"enqueue[{i}]", params) for i, params in enumerate(cfg.tune.enqueue)]
    for origin, params in queued:
        study.enqueue_trial(params, user_attrs={"enqueued": origin})
    return len(queued)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study: Any) -> list[int]:
    """Trials left RUNNING by a worker of this machine that no longer exists (killed, crashed, powered off) are failed
    now and queued again with the same params (a worker on another machine is left to the heartbeat). Returns the
    numbers of the trials recovered."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=1)  # what the heartbeat does, done at once
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            retry(study, study.tell(trial.number, state=TrialState.FAIL))
            recovered.append(trial.number)
    return recovered


def retry_of(trial: Any) -> int | None:
    """The number of the failed trial this (running) trial runs again, if it is a retry (the attribute Optuna's
    retry callback sets)."""
    return trial.study.get_trials(deepcopy=False)[trial.number].system_attrs.get("failed_trial")


def finished(study: Any) -> dict[str, int]:
    """How many trials the study has, by state (complete, pruned, fail, running, waiting)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def finished_count(study: Any) -> int:
    counts = finished(study)
    return counts.get("complete", 0) + counts.get("pruned", 0)


def reporter(trial: Any, metric: str, on_evaluate: Callable[[int, dict[str, float]], None] | None = None) -> Any:
    """A TrainerCallback that reports each validation pass's `metric` to the Optuna trial (step k = the k-th pass,
    one per epoch) and, when the pruner says so, stops training; `pruned_at` then names the pass."""
    from transformers import TrainerCallback

    key = f"eval_{metric}"

    class ReportToTrial(TrainerCallback):
        def __init__(self) -> None:
            self.passes = 0
            self.pruned_at: int | None = None
            self.values: list[float] = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not state.is_world_process_zero or not metrics:
                return
            if key not in metrics:
                raise TuneError(
                    f"validation reported no {metric} (train.metric_for_best_model); it has {list(metrics)}"
                )
            self.passes += 1
            value = float(metrics[key])
            self.values.append(value)
            trial.report(value, self.passes)
            if on_evaluate is not None:
                on_evaluate(self.passes, {k.removeprefix("eval_"): float(v) for k, v in metrics.items()})
            if trial.should_prune():
                self.pruned_at = self.passes
                control.should_training_stop = True

    return ReportToTrial()


def origin_of(study: Any, cfg: PipelineConfig) -> TunedFrom:
    """The provenance an overlay carries: study, best trial, its validation value, the data it searched on."""
    best = study.best_trial
    return TunedFrom(
        study=study.study_name,
        trial=best.number,
        metric=cfg.train.metric_for_best_model,
        value=float(best.value),
        storage=masked(storage_url(cfg)),
        data_md5=study.user_attrs.get("data_md5"),
        tuned_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        finished_trials=finished_count(study),
    )


def best_layer(study: Any, cfg: PipelineConfig) -> dict[str, Any]:
    """The overlay of the study's best trial, with its origin (`tune.origin`)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        counts = ", ".join(f"{n} {state}" for state, n in finished(study).items()) or "no trials"
        raise TuneError(f"study {study.study_name!r} has no complete trial yet ({counts}): run more trials")
    layer = overlay_of(study.best_trial.params)
    layer["tune"] = {"origin": origin_of(study, cfg).model_dump(mode="json")}
    return layer


def run_command(base_files: list[str], overlay: Path) -> str:
    """The `tunepipe run` that trains with the overlay; paths inside the working directory are shown relative to
    it, so that the overlay a project commits names no folder of one machine."""
    here = Path.cwd().resolve()

    def shown(path: str | Path) -> str:
        full = Path(path).resolve()
        return str(full.relative_to(here)) if full.is_relative_to(here) else str(path)

    return " ".join(["tunepipe run", *(f"--config {shown(f)}" for f in [*base_files, overlay])])


def overlay_text(layer: dict[str, Any], base_files: list[str], overlay: Path) -> str:
    """The overlay file: a header saying where the values come from and how to use them, then the layer."""
    origin = TunedFrom.model_validate(layer["tune"]["origin"])
    header = [
        f"# Tuned by `tunepipe tune`: study {origin.study}, best of {origin.finished_trials} finished trials is",
        f"# trial {origin.trial} (validation {origin.metric} {origin.value:.4f}), on data md5 {origin.data_md5}.",
        "# The champion still comes out of the normal flow, gates and registry:",
        f"#   {run_command(base_files or ['BASE.yaml'], overlay)}",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(layer, sort_keys=False)


def write_overlay(text: str, path: Path) -> Path:
    """Write the overlay atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_searchable(cfg: PipelineConfig) -> None:
    """Settings a search cannot run with, refused before anything starts."""
    if cfg.train.num_processes > 1 or cfg.train.nnodes > 1:
        raise ConfigError(
            "tune: train.num_processes/nnodes > 1 is not searched (a trial's pruning callback runs in one process); "
            "run trials side by side with tune.parallel instead"
        )
