"""`tunepipe tune`: search hyper-parameters on the validation split, write the best as a config overlay.

1. `prepare`: validate once into the study's base run directory (`<paths.artifacts>/tune/<study>/base`) and tokenize
   its train and validation splits only: the search never tokenizes, loads or scores the test split. The study is
   created in Optuna's RDB storage (`training.tuning.storage_url`) with the data md5 and a key of the settings that
   must not change while it continues (`tuning.search_key`); the same name continues it, other data or settings are
   refused. Its MLflow parent run is created, and the baseline and `tune.enqueue` trials are queued.
2. `search`: trials until the study has `tune.trials` finished (complete or pruned) ones, or `tune.timeout_s`. A
   trial's run directory links the base's tokenized splits (no re-validation, no re-tokenization), trains with the
   trial's params through the train step, reports each validation pass to the pruner and stops when pruned. Each
   trial is an MLflow run nested under the study's run (params, per-epoch metrics, state). Trials that a dead
   worker of this machine left running are failed and run again with the same params (`tuning.recover_dead_trials`).
3. `finish`: the best trial's params as `<tune.overlay_dir>/<study>.yaml` (with `tune.origin`: study, trial, value,
   data md5), logged to the study's run too. `tunepipe run --config BASE --config OVERLAY` trains the champion
   through the normal flow, gates and registry; its lineage names the study and trial.

`retune_decision` is the scheduled retrain's question: are `tune.retune_every` new data versions in since the study
whose values the latest model was trained with?
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig, with_layer
from pipeline_lib.data.versions import content_md5
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.registry import store
from pipeline_lib.registry.registration import flatten
from pipeline_lib.roots import check_write
from pipeline_lib.steps import run_step, with_inferred_labels
from pipeline_lib.steps.tokenize import encode_split
from pipeline_lib.steps.train import train as train_step
from pipeline_lib.training import tuning
from pipeline_lib.training.modeling import load_tokenizer, resolve_model_source
from pipeline_lib.training.tuning import TuneError

log = logging.getLogger(__name__)
SEARCH_SPLITS = ("train", "validation")  # what a search tokenizes and trains on; never the test split
PARENT_RUN = "mlflow_parent_run_id"  # study user attribute: the study's MLflow run


@dataclass(frozen=True)
class StudyDir:
    """`<paths.artifacts>/tune/<study>/`: the validated, tokenized `base` run directory and one per trial."""

    root: Path

    @classmethod
    def of(cls, cfg: PipelineConfig) -> StudyDir:
        return cls(Path(cfg.paths.artifacts) / "tune" / tuning.study_name(cfg))

    @property
    def base(self) -> RunDir:
        return RunDir(self.root / "base")

    def trial(self, number: int) -> RunDir:
        return RunDir(self.root / "trials" / f"{number:04d}")

    def new_trial(self, number: int) -> RunDir:
        """Trial `number`'s fresh run directory over the base's split files and tokenized splits (links: a distilled
        trial reads its training texts for the teacher's logits)."""
        run = self.trial(number)
        shutil.rmtree(run.root, ignore_errors=True)
        run.root.mkdir(parents=True)
        run.tokenized.symlink_to(Path("..") / ".." / "base" / "tokenized", target_is_directory=True)
        splits = run.split_file("train").parent
        splits.symlink_to(Path("..") / ".." / "base" / splits.name, target_is_directory=True)
        return run

    @property
    def ready(self) -> bool:
        return (self.base.tokenized / "meta.json").is_file()


@dataclass
class TuneResult:
    study: str
    storage: str
    trials: dict[str, int]  # by state
    best_trial: int
    best_value: float
    metric: str
    params: dict[str, Any]
    overlay: str
    parent_run_id: str
    command: str  # the `tunepipe run` that trains the champion with the overlay
    ran: list[dict[str, Any]] = field(default_factory=list)  # every trial: number, state, value, params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_md5(cfg: PipelineConfig) -> str:
    path = Path(cfg.data.path)
    if not path.exists():
        raise FileNotFoundError(f"data.path {path} does not exist (tunepipe data pull restores a DVC version)")
    return content_md5(path)


def prepare(cfg: PipelineConfig) -> dict[str, Any]:
    """Validate and tokenize once, create (or check and continue) the study and its MLflow run."""
    import optuna

    apply_quiet_env()
    tuning.check_searchable(cfg)
    name, md5, key = tuning.study_name(cfg), data_md5(cfg), tuning.search_key(cfg)
    store_ = tuning.storage(cfg)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(store_)}.get(name)
    if existing is not None and existing.user_attrs:
        _check_same_search(name, existing.user_attrs, md5, key)
    folder = StudyDir.of(cfg)
    if not folder.ready:
        _validate_and_tokenize(cfg, folder)
    else:
        log.info("study %s: reusing the validated, tokenized splits in %s", name, folder.base.root)
    study = tuning.open_study(cfg)
    client = store.connect(cfg)
    if not study.user_attrs.get(PARENT_RUN):
        labels = with_inferred_labels(cfg, folder.base).data.label_names
        attrs = {"data_md5": md5, "search_key": key, "labels": labels, "data_path": cfg.data.path}
        attrs |= {"metric": cfg.train.metric_for_best_model, "model_name": cfg.registry.model_name}
        for attr, value in attrs.items():
            study.set_user_attr(attr, value)
        queued = tuning.enqueue_first(study, cfg)
        study.set_user_attr(PARENT_RUN, _parent_run(client, cfg, name, md5))
        log.info(
            "study %s: created in %s, %d trial(s) queued first", name, tuning.masked(tuning.storage_url(cfg)), queued
        )
    else:
        client.update_run(study.user_attrs[PARENT_RUN], status="RUNNING")
        log.info("study %s: continuing (%d finished trials)", name, tuning.finished_count(study))
    return {"study": name, "base": str(folder.base.root), "data_md5": md5, "trials": tuning.finished(study)}


def _check_same_search(name: str, attrs: dict[str, Any], md5: str, key: str) -> None:
    changed = []
    if attrs.get("data_md5") != md5:
        changed.append(f"data (md5 {str(attrs.get('data_md5'))[:12]} then, {md5[:12]} now)")
    if attrs.get("search_key") != key:
        changed.append("settings (task, data, model, the train fields not searched, or tune.space)")
    if changed:
        raise TuneError(
            f"study {name!r} was searched with different {' and '.join(changed)}: its trials would not compare. Run "
            "the same config on the same data to continue it, or name a new study (--name / tune.study)"
        )


def _validate_and_tokenize(cfg: PipelineConfig, folder: StudyDir) -> None:
    """The study's base run directory: the validate step's splits and report, and the train and validation splits
    tokenized (in a staging folder renamed into place, so a killed search never leaves half of it)."""
    import pandas as pd
    from datasets import DatasetDict

    base = folder.base
    run_step("validate", cfg, base)
    cfg = with_inferred_labels(cfg, base)
    tokenizer = load_tokenizer(resolve_model_source(cfg.model.name))
    frames = {split: pd.read_parquet(base.split_file(split)) for split in SEARCH_SPLITS}
    dataset = DatasetDict({split: encode_split(frame, tokenizer, cfg, split) for split, frame in frames.items()})
    staging = base.root / ".tokenized.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    write_json(staging / "meta.json", {"rows": {s: len(d) for s, d in dataset.items()}, "splits": list(dataset)})
    shutil.rmtree(base.tokenized, ignore_errors=True)
    staging.rename(base.tokenized)


def _parent_run(client: Any, cfg: PipelineConfig, name: str, md5: str) -> str:
    """The study's MLflow run: the search settings as params; trials nest under it."""
    from mlflow.entities import Param

    experiment = store.experiment_id(cfg, client)
    tags = {"tune.kind": "study", "tune.study": name, "tune.storage": tuning.masked(tuning.storage_url(cfg))}
    tags |= {"data.md5": md5, "data.path": cfg.data.path, "model.name": cfg.model.name}
    run_id = client.create_run(experiment, run_name=f"tune-{name}", tags=tags).info.run_id
    settings = cfg.tune.model_dump(mode="json", exclude={"origin", "enqueue"})
    params = flatten("tune", settings) | {"task": cfg.task, "metric": cfg.train.metric_for_best_model}
    client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    return run_id


def search(cfg: PipelineConfig, worker: int = 0, workers: int = 1) -> dict[str, int]:
    """Run trials until the study has `tune.trials` finished ones (or `tune.timeout_s` passed); trial counts. One of
    `workers` searching the study at once runs its share of the trials left."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    folder = StudyDir.of(cfg)
    if not folder.ready:
        raise TuneError(f"{folder.base.root} has no tokenized splits: run prepare first (tunepipe tune does)")
    study = tuning.open_study(cfg, worker=worker, create=False)
    for number in tuning.recover_dead_trials(study):
        log.warning("trial %d: its worker died; failed it and queued it again with the same params", number)
        _close_killed_trial(cfg, study, number, folder.trial(number))
    remaining = cfg.tune.trials - tuning.finished_count(study)
    if remaining <= 0:
        log.info("study %s has its %d finished trials (tune.trials)", study.study_name, cfg.tune.trials)
        return tuning.finished(study)
    objective = _Objective(with_inferred_labels(cfg, folder.base), folder, study.user_attrs[PARENT_RUN])
    study.optimize(
        objective,
        n_trials=-(-remaining // workers),
        timeout=cfg.tune.timeout_s,
        callbacks=[MaxTrialsCallback(cfg.tune.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
    )
    return tuning.finished(study)


class _Objective:
    """One trial: its own run directory over the base's tokenized splits, the train step with the trial reporter,
    an MLflow run nested under the study's."""

    def __init__(self, cfg: PipelineConfig, folder: StudyDir, parent_run_id: str) -> None:
        self.cfg, self.folder, self.parent = cfg, folder, parent_run_id
        self.client = store.connect(cfg)
        self.experiment = store.experiment_id(cfg, self.client)

    def __call__(self, trial: Any) -> float:
        import optuna

        trial.set_user_attr("worker", tuning.worker_id())
        params = tuning.suggest(trial, self.cfg)
        run = self.folder.new_trial(trial.number)
        run_id = self._open_run(trial, params)
        trial.set_user_attr("mlflow_run_id", run_id)
        metric = self.cfg.train.metric_for_best_model
        report = tuning.reporter(trial, metric, lambda step, metrics: self._log_pass(run_id, step, metrics))
        start = time.perf_counter()
        shown = ", ".join(f"{k.removeprefix('train.')}={format_value(v)}" for k, v in sorted(params.items()))
        log.info("trial %d: %s", trial.number, shown)
        try:
            result = train_step(tuning.trial_config(self.cfg, params, self.cfg.tune.parallel), run, [report])
        except BaseException:
            self.client.set_tag(run_id, "tune.state", "FAIL")
            self.client.set_terminated(run_id, "FAILED")
            raise
        finally:
            shutil.rmtree(run.model_dir, ignore_errors=True)  # the champion is trained by the normal flow
        seconds = time.perf_counter() - start
        self._close(run_id, run, result, report, seconds)
        if report.pruned_at is not None:
            log.info("trial %d: pruned after validation pass %d (%.0f s)", trial.number, report.pruned_at, seconds)
            raise optuna.TrialPruned(f"pruned after validation pass {report.pruned_at}")
        log.info("trial %d: validation %s %.4f (%.0f s)", trial.number, metric, result.best_metric, seconds)
        return float(result.best_metric)

    def _open_run(self, trial: Any, params: dict[str, Any]) -> str:
        from mlflow.entities import Param

        study = trial.study.study_name
        tags = {"mlflow.parentRunId": self.parent, "tune.kind": "trial", "tune.study": study}
        tags |= {"tune.trial": str(trial.number), "tune.state": "RUNNING"}
        retried = tuning.retry_of(trial)
        if retried is not None:
            tags["tune.retry_of"] = str(retried)
        if trial.user_attrs.get("enqueued"):
            tags["tune.enqueued"] = str(trial.user_attrs["enqueued"])
        run_id = self.client.create_run(self.experiment, run_name=f"{study}-trial-{trial.number}", tags=tags)
        run_id = run_id.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run_id

    def _log_pass(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(f"val_{k}", v, now, step) for k, v in metrics.items()])

    def _close(self, run_id: str, run: RunDir, result: Any, report: Any, seconds: float) -> None:
        from mlflow.entities import Metric

        from pipeline_lib.layout import read_json

        now = int(time.time() * 1000)
        rows = read_json(run.train_history) if run.train_history.is_file() else []
        metrics = [
            Metric("train_loss", row["train_loss"], now, i) for i, row in enumerate(rows, 1) if "train_loss" in row
        ]
        best = result.best_metric if result.best_metric is not None else float("nan")
        metrics += [Metric(f"best.val_{result.metric_for_best_model}", float(best), now, 0)]
        metrics += [Metric("trial.seconds", seconds, now, 0), Metric("trial.validation_passes", report.passes, now, 0)]
        self.client.log_batch(run_id, metrics=metrics)
        self.client.set_tag(run_id, "tune.state", "PRUNED" if report.pruned_at is not None else "COMPLETE")
        self.client.set_terminated(run_id, "FINISHED")


def format_value(value: Any) -> str:
    """A param value as the logs and the CLI show it."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _close_killed_trial(cfg: PipelineConfig, study: Any, number: int, run: RunDir) -> None:
    """A dead worker's trial: its MLflow run KILLED, the model and checkpoints it left removed."""
    for left in (run.model_dir, run.checkpoints):
        shutil.rmtree(left, ignore_errors=True)
    run_id = study.trials[number].user_attrs.get("mlflow_run_id")
    if run_id:
        client = store.connect(cfg)
        client.set_tag(run_id, "tune.state", "FAIL")
        client.set_terminated(run_id, "KILLED")


def finish(cfg: PipelineConfig, base_files: list[str] | None = None) -> TuneResult:
    """Write the best trial's overlay, close the study's MLflow run with the best figures, and say how to use it."""
    from mlflow.entities import Metric

    study = tuning.open_study(cfg, create=False)
    layer = tuning.best_layer(study, cfg)
    name = study.study_name
    path = Path(cfg.tune.overlay_dir) / f"{name}.yaml"
    check_write(path, cfg, "tune.overlay_dir")
    files = [str(f) for f in base_files or []]
    text = tuning.overlay_text(layer, files, path)
    tuning.write_overlay(text, path)
    best, counts = study.best_trial, tuning.finished(study)
    client = store.connect(cfg)
    parent = study.user_attrs[PARENT_RUN]
    now = int(time.time() * 1000)
    figures = {f"best.val_{cfg.train.metric_for_best_model}": float(best.value), "best.trial": best.number}
    figures |= {f"trials.{state}": n for state, n in counts.items()}
    client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in figures.items()])
    client.set_tag(parent, "tune.best_trial", str(best.number))
    client.set_tag(parent, "tune.overlay", str(path))
    client.log_text(parent, text, f"tuned/{name}.yaml")
    client.set_terminated(parent, "FINISHED")
    command = tuning.run_command(files, path)
    return TuneResult(
        study=name,
        storage=tuning.masked(tuning.storage_url(cfg)),
        trials=counts,
        best_trial=best.number,
        best_value=float(best.value),
        metric=cfg.train.metric_for_best_model,
        params=dict(best.params),
        overlay=str(path),
        parent_run_id=parent,
        command=command,
        ran=[
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in study.get_trials(deepcopy=False)
        ],
    )


def tune(cfg: PipelineConfig, base_files: list[str] | None = None) -> TuneResult:
    """prepare → search → finish in this process (the Prefect flow `tune` runs the same three as tasks)."""
    prepare(cfg)
    search(cfg)
    return finish(cfg, base_files)


def tuned(cfg: PipelineConfig, study: str) -> PipelineConfig:
    """`cfg` with the best trial of `study` as its overlay (read from the storage, not from a file)."""
    named = with_layer(cfg, {"tune": {"study": study}})
    return with_layer(cfg, tuning.best_layer(tuning.open_study(named, create=False), named))


@dataclass
class RetuneDecision:
    """Whether the scheduled retrain searches again before training, and which study's values it trains with."""

    retune: bool
    reason: str
    study: str | None  # the study to run (retune) or whose best trial to train with; None: the config as it is
    data_md5: str | None
    versions_since: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retune_decision(cfg: PipelineConfig) -> RetuneDecision:
    """Count the data versions since the last tuning: the distinct `data.md5` tags of the registered versions trained
    with the latest study's values, plus the data now, less the data that study searched on. `tune.retune_every`
    of them (or no tuned version yet) → search again, on this data, as study `<name>-<md5[:8]>`."""
    every = cfg.tune.retune_every
    md5 = data_md5(cfg)
    fresh = f"{tuning.study_name(cfg)}-{md5[:8]}"
    if not every:
        return RetuneDecision(False, "tune.retune_every is 0: the config's values as they are", None, md5, 0)
    client = store.connect(cfg)
    try:
        versions = client.search_model_versions(f"name='{cfg.registry.model_name}'")
    except Exception as exc:
        if not store.is_missing(exc):
            raise
        versions = []
    tuned = [v for v in versions if (v.tags or {}).get("tune.study")]
    if not tuned:
        return RetuneDecision(True, f"no version of {cfg.registry.model_name} was tuned yet", fresh, md5, 0)
    latest = max(tuned, key=lambda v: int(v.version))
    study, searched_on = latest.tags["tune.study"], latest.tags.get("tune.data_md5")
    seen = {v.tags.get("data.md5") for v in tuned if v.tags.get("tune.study") == study} | {md5}
    seen.discard(searched_on)
    since = len(seen)
    if since >= every:
        reason = f"{since} new data version(s) since study {study} (tune.retune_every={every}): searching again"
        return RetuneDecision(True, reason, fresh, md5, since)
    try:
        tuning.open_study(with_layer(cfg, {"tune": {"study": study}}), create=False)
    except TuneError as exc:
        return RetuneDecision(True, f"{exc}; searching again", fresh, md5, since)
    reason = f"{since} of {every} new data version(s) since study {study}: training with its best trial"
    return RetuneDecision(False, reason, study, md5, since)
