"""Step 3, train: fine-tune a task head on the pretrained encoder with transformers' Trainer."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib import adaptation, distributed, hardware
from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.modeling import load_classifier, load_tokenizer, resolve_model_source
from pipeline_lib.task_types import task_for
from pipeline_lib.tokenization import load_tokenized

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch_logger():
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        """One readable log line per validation pass instead of progress bars and log dicts."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            shown = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
            names = ("loss", "accuracy", "macro_f1", "entity_f1", "token_accuracy")
            figures = " ".join(f"{k}={shown[k]:.4f}" for k in names if k in shown)
            log.info("epoch %.2f step %d: validation %s", state.epoch, state.global_step, figures)

    return EpochLogger()


def training_arguments(cfg: PipelineConfig, run: RunDir, precision: str, device: str) -> Any:
    from transformers import TrainingArguments

    t = cfg.train
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        optim="adamw_torch_fused",  # one fused kernel per step, on CPU too (torch >= 2.4)
        lr_scheduler_type="linear",
        eval_strategy="epoch" if t.max_steps < 0 else "steps",
        save_strategy="epoch" if t.max_steps < 0 else "steps",
        eval_steps=None if t.max_steps < 0 else max(1, t.max_steps),
        save_steps=None if t.max_steps < 0 else max(1, t.max_steps),
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=t.metric_for_best_model,
        greater_is_better=t.metric_for_best_model != "loss",
        save_total_limit=2,
        save_only_model=False,
        train_sampling_strategy="group_by_length",
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        gradient_checkpointing=t.gradient_checkpointing,
        torch_compile=t.compile,
        ddp_backend="gloo" if device == "cpu" and distributed.in_worker() else None,
    )


def train(cfg: PipelineConfig, run: RunDir) -> TrainResult:
    """Fine-tune on the train split, select on validation, keep the best checkpoint in `run.model_dir`."""
    import torch
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    if cfg.train.num_processes > 1 and not distributed.in_worker():
        distributed.launch(cfg, run)
        summary = read_json(run.train_summary)
        return TrainResult(**{name: summary[name] for name in TrainResult.__dataclass_fields__})

    start = time.perf_counter()
    capability = hardware.detect()
    precision = hardware.resolve_precision(cfg.train.precision, capability)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (cfg.train.num_threads or capability.cores) // world))
    set_seed(cfg.train.seed)

    source = resolve_model_source(cfg.model.name)
    tokenizer = load_tokenizer(source)
    model, trainable = adaptation.prepare(load_classifier(source, cfg.data.labels, cfg.task), cfg.train, cfg.task)
    log.info("trainable parameters (%s): %d of %d", trainable.strategy, trainable.trainable, trainable.total)
    data = load_tokenized(run)
    task = task_for(cfg.task)
    timer = _step_timer()
    callbacks = [_epoch_logger(), timer]
    if cfg.train.save_steps:
        callbacks.append(_checkpoint_every(cfg.train.save_steps))
    if cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))

    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, run, precision, capability.device),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        compute_metrics=task.compute_metrics(cfg, data["validation"]),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    if task.eval_in_order:
        evaluate_in_order(trainer)
    resume_from = last_checkpoint(run) if cfg.train.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    output = trainer.train(resume_from_checkpoint=resume_from)
    if not trainer.is_world_process_zero():
        return _result(cfg, trainer, output, precision, capability.device, start)

    shutil.rmtree(run.model_dir, ignore_errors=True)
    adaptation.merged(trainer.model).save_pretrained(str(run.model_dir))
    tokenizer.save_pretrained(str(run.model_dir))
    history = epoch_history(trainer.state.log_history)
    write_json(run.train_history, history)

    result = _result(cfg, trainer, output, precision, capability.device, start, history)
    write_json(
        run.train_summary,
        {
            **result.to_dict(),
            "capability": capability.to_dict(),
            "trainable": trainable.to_dict(),
            "world_size": world,
            "train_loop_seconds": round(float(output.metrics.get("train_runtime", 0.0)), 3),  # Trainer.train() only
            "step_seconds": round(timer.seconds, 3),  # optimizer steps only: no evaluation, checkpoints or set-up
            "step_samples_per_second": round(timer.samples_per_second(cfg.train, world), 3),
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
    history: list | None = None,
) -> TrainResult:
    state = trainer.state
    planned = cfg.train.max_steps if cfg.train.max_steps > 0 else state.max_steps
    return TrainResult(
        global_step=state.global_step,
        epochs_run=round(float(state.epoch or 0), 4),
        best_epoch=_best_epoch(history or [], cfg.train.metric_for_best_model),
        best_metric=state.best_metric,
        metric_for_best_model=cfg.train.metric_for_best_model,
        stopped_early=state.global_step < planned,
        precision=precision,
        device=device,
        train_samples_per_second=round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
        seconds=round(time.perf_counter() - start, 3),
    )


def evaluate_in_order(trainer: Any) -> Any:
    """Evaluate in dataset order: with `group_by_length`, transformers also groups *evaluation* batches by
    length, and a metric that re-assembles windows into sentences needs the predictions in order."""
    from torch.utils.data import SequentialSampler

    trainer._get_eval_sampler = lambda dataset: None if dataset is None else SequentialSampler(dataset)
    return trainer


def last_checkpoint(run: RunDir) -> str | None:
    """The newest complete Trainer checkpoint in the run directory, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(run.checkpoints)) if run.checkpoints.is_dir() else None


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time spent inside optimizer steps (forward, backward, update): the engine's steady-state speed,
        free of evaluation, checkpointing and start-up."""

        def __init__(self) -> None:
            self.seconds, self.steps, self._begin = 0.0, 0, 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self._begin
            self.steps += 1

        def samples_per_second(self, t: Any, world: int) -> float:
            samples = self.steps * t.batch_size * t.gradient_accumulation_steps * world
            return samples / self.seconds if self.seconds else 0.0

    return StepTimer()


def _checkpoint_every(steps: int):
    from transformers import TrainerCallback

    class CheckpointEvery(TrainerCallback):
        """A resumable checkpoint every `steps` optimizer steps, besides the per-epoch ones."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps == 0:
                control.should_save = True

    return CheckpointEvery()


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Merge Trainer's train and eval log entries into one row per epoch."""
    rows: dict[float, dict[str, float]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = rows.setdefault(round(float(entry["epoch"]), 4), {"epoch": round(float(entry["epoch"]), 4)})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                row[f"val_{key.removeprefix('eval_')}"] = float(value)
    return [rows[k] for k in sorted(rows) if len(rows[k]) > 1]


def _best_epoch(history: list[dict[str, float]], metric: str) -> float | None:
    scored = [row for row in history if f"val_{metric}" in row]
    if not scored:
        return None
    pick = min if metric == "loss" else max
    return pick(scored, key=lambda row: row[f"val_{metric}"])["epoch"]
