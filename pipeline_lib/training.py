"""Step 3, train: fine-tune a task head on the pretrained encoder with transformers' Trainer."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline_lib import hardware
from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir, write_json
from pipeline_lib.metrics import classification_metrics
from pipeline_lib.modeling import load_classifier, load_tokenizer, resolve_model_source
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


def _compute_metrics(labels: list[str]):
    def compute(eval_pred: Any) -> dict[str, float]:
        logits, label_ids = eval_pred.predictions, eval_pred.label_ids
        metrics = classification_metrics(label_ids, np.argmax(logits, axis=-1), labels)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}

    return compute


def _epoch_logger():
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        """One readable log line per validation pass instead of progress bars and log dicts."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            shown = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
            figures = " ".join(f"{k}={shown[k]:.4f}" for k in ("loss", "accuracy", "macro_f1") if k in shown)
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
        optim="adamw_torch",
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
    )


def train(cfg: PipelineConfig, run: RunDir) -> TrainResult:
    """Fine-tune on the train split, select on validation, keep the best checkpoint in `run.model_dir`."""
    import torch
    from transformers import (
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
        set_seed,
    )

    start = time.perf_counter()
    capability = hardware.detect()
    precision = hardware.resolve_precision(cfg.train.precision, capability)
    torch.set_num_threads(cfg.train.num_threads or capability.cores)
    set_seed(cfg.train.seed)

    source = resolve_model_source(cfg.model.name)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, cfg.data.labels, cfg.task)
    data = load_tokenized(run)
    callbacks = [_epoch_logger()]
    if cfg.train.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))

    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, run, precision, capability.device),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_compute_metrics(cfg.data.labels),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()

    shutil.rmtree(run.model_dir, ignore_errors=True)
    trainer.save_model(str(run.model_dir))
    tokenizer.save_pretrained(str(run.model_dir))
    history = epoch_history(trainer.state.log_history)
    write_json(run.train_history, history)

    state = trainer.state
    planned = cfg.train.max_steps if cfg.train.max_steps > 0 else state.max_steps
    result = TrainResult(
        global_step=state.global_step,
        epochs_run=round(float(state.epoch or 0), 4),
        best_epoch=_best_epoch(history, cfg.train.metric_for_best_model),
        best_metric=state.best_metric,
        metric_for_best_model=cfg.train.metric_for_best_model,
        stopped_early=state.global_step < planned,
        precision=precision,
        device=capability.device,
        train_samples_per_second=round(float(output.metrics.get("train_samples_per_second", 0.0)), 3),
        seconds=round(time.perf_counter() - start, 3),
    )
    write_json(run.train_summary, {**result.to_dict(), "capability": capability.to_dict()})
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    return result


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
