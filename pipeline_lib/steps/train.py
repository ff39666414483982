"""Step 3, train: fine-tune a task head on the pretrained encoder with transformers' Trainer (set up by
`training.trainer`); the best checkpoint by the validation metric is kept in the run directory."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipeline_lib import hardware
from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import SPLITS, RunDir, read_json, write_json
from pipeline_lib.steps.teacher import with_teacher
from pipeline_lib.steps.tokenize import load_tokenized
from pipeline_lib.task_types import task_for
from pipeline_lib.training import adaptation, distill, distributed
from pipeline_lib.training import trainer as trainer_setup
from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    global_step: int
    epochs_run: float
    best_epoch: float | None
    best_metric: float | None
    metric_for_best_model: str
    stopped_early: bool
    precision: str
    device: str
    train_samples_per_second: float
    seconds: float
    step_seconds: float = 0.0  # inside optimizer steps only: no evaluation, checkpoints or set-up

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(cfg: PipelineConfig, run: RunDir, extra_callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune on the train split, select on validation, keep the best checkpoint in `run.model_dir`.
    `extra_callbacks`: more TrainerCallbacks (a search's trial reporter); in-process training only."""
    import torch
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    if cfg.train.num_processes > 1 and not distributed.in_worker():
        if extra_callbacks:
            raise ValueError("extra Trainer callbacks run in this process: train.num_processes must be 1")
        distributed.launch(cfg, run)
        summary = read_json(run.train_summary)
        return TrainResult(**{name: summary[name] for name in TrainResult.__dataclass_fields__ if name in summary})

    start = time.perf_counter()
    capability = hardware.detect()
    precision = hardware.resolve_precision(cfg.train.precision, capability)
    if warning := hardware.emulated_precision_warning(precision, capability):
        log.warning(warning)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (cfg.train.num_threads or capability.cores) // world))
    set_seed(cfg.train.seed)

    source = resolve_model_source(cfg.model.name)
    tokenizer = load_tokenizer(source)
    model, trainable = adaptation.prepare(
        load_classifier(source, cfg.data.label_names, cfg.task, cfg.model.dropout), cfg.train, cfg.task
    )
    log.info("trainable parameters (%s): %d of %d", trainable.strategy, trainable.trainable, trainable.total)
    data = load_tokenized(run)
    distilled = None
    task = task_for(cfg.task)
    collator = task.collator(tokenizer)
    if cfg.train.distill.teacher:
        frame = pd.read_parquet(run.split_file("train"))
        every = [str(t) for s in SPLITS for t in pd.read_parquet(run.split_file(s))["text"]]
        data["train"], distilled = with_teacher(cfg, data["train"], frame, tokenizer, every)
        if cfg.task == "token_classification":
            collator = distill.PackedLabelCollator(collator)
    timer = trainer_setup.step_timer()
    callbacks = [trainer_setup.epoch_logger(), trainer_setup.progress(cfg), timer, *extra_callbacks]
    if cfg.train.save_steps:
        callbacks.append(trainer_setup.checkpoint_every(cfg.train.save_steps))
    if cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))

    trainer = Trainer(
        model=model,
        args=trainer_setup.training_arguments(cfg, run, precision, capability.device),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=task.compute_metrics(cfg, data["validation"]),
        callbacks=callbacks,
        compute_loss_func=distill.distillation_loss(cfg.train.distill) if distilled else None,
    )
    if distilled:
        trainer.loss_is_scaled_for_ga = False  # a per-batch mean, like the model's own loss
    trainer.remove_callback(PrinterCallback)
    if task.eval_in_order:
        trainer_setup.evaluate_in_order(trainer)
    resume_from = trainer_setup.last_checkpoint(run) if cfg.train.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    output = trainer.train(resume_from_checkpoint=resume_from)
    if not trainer.is_world_process_zero():
        return _result(cfg, trainer, output, precision, capability.device, start, timer)

    shutil.rmtree(run.model_dir, ignore_errors=True)
    adaptation.merged(trainer.model).save_pretrained(str(run.model_dir))
    tokenizer.save_pretrained(str(run.model_dir))
    history = trainer_setup.epoch_history(trainer.state.log_history)
    write_json(run.train_history, history)

    result = _result(cfg, trainer, output, precision, capability.device, start, timer, history)
    write_json(
        run.train_summary,
        {
            **result.to_dict(),
            "capability": capability.to_dict(),
            "trainable": trainable.to_dict(),
            "world_size": world,
            "train_loop_seconds": round(float(output.metrics.get("train_runtime", 0.0)), 3),  # Trainer.train() only
            "step_samples_per_second": round(timer.samples_per_second(cfg.train, world), 3),
            **({"distill": distilled} if distilled else {}),
        },
    )
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    return result


def _result(
    cfg: PipelineConfig,
    trainer: Any,
    output: Any,
    precision: str,
    device: str,
    start: float,
    timer: Any,
    history: list | None = None,
) -> TrainResult:
    state = trainer.state
    planned = cfg.train.max_steps if cfg.train.max_steps > 0 else state.max_steps
    return TrainResult(
        global_step=state.global_step,
        epochs_run=round(float(state.epoch or 0), 4),
        best_epoch=trainer_setup.kept_epoch(state, history or [], cfg.train.metric_for_best_model),
        best_metric=state.best_metric,
        metric_for_best_model=cfg.train.metric_for_best_model,
        stopped_early=state.global_step < planned,
        precision=precision,
        device=device,
        train_samples_per_second=round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
        seconds=round(time.perf_counter() - start, 3),
        step_seconds=round(timer.seconds, 3),
    )


if __name__ == "__main__":  # one torchrun worker (`training.distributed.launch`): CONFIG_YAML RUN_DIR
    import sys

    apply_quiet_env()
    train(load_config(sys.argv[1]), RunDir(sys.argv[2]))
