"""transformers' Trainer, set up the way the train step uses it: arguments from the config, callbacks (a log line
per validation pass, a step timer, step checkpoints), evaluation in dataset order, and the per-epoch history."""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import RunDir
from pipeline_lib.training import distributed

log = logging.getLogger(__name__)


def epoch_logger():
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        """One readable log line per validation pass instead of progress bars and log dicts."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            shown = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
            names = ("loss", "accuracy", "macro_f1", "entity_f1", "token_accuracy")
            figures = " ".join(f"{k}={shown[k]:.4f}" for k in names if k in shown)
            log.info("epoch %.2f step %d: validation %s", state.epoch, state.global_step, figures)

    return EpochLogger()


def progress(cfg: PipelineConfig):
    """Training and each validation pass as `progress.ProgressReporter`s: steps (epoch, samples/s, ETA) and batches."""
    from transformers import TrainerCallback

    from pipeline_lib.progress import ProgressReporter

    samples_per_step = cfg.train.batch_size * cfg.train.gradient_accumulation_steps

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.train: ProgressReporter | None = None
            self.eval: ProgressReporter | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.train = ProgressReporter("training", state.max_steps, "steps", cfg.output)
                self.train.done = state.global_step  # resumed runs start part-way

        def on_step_end(self, args, state, control, **kwargs):
            if self.train is not None:
                rate = self.train.rate * samples_per_step
                self.train.advance(figures=f"epoch {state.epoch or 0:.2f}, {rate:.1f} samples/s")

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if not state.is_world_process_zero:
                return
            if self.eval is None:
                total = len(eval_dataloader) if eval_dataloader is not None else 1
                self.eval = ProgressReporter("validation", total, "batches", cfg.output)
            self.eval.advance()

        def on_evaluate(self, args, state, control, **kwargs):
            if self.eval is not None:
                self.eval.close()
                self.eval = None

        def on_train_end(self, args, state, control, **kwargs):
            if self.train is not None:
                self.train.close()
                self.train = None

    return Progress()


def evaluation_schedule(t: Any) -> dict[str, Any]:
    """When the Trainer validates and saves (they must match for the best checkpoint to be kept): every epoch, every
    `train.eval_every` steps, or with `train.max_steps` and per-epoch validation once, at the last step."""
    if t.eval_every == "epoch" and t.max_steps < 0:
        return {"eval_strategy": "epoch", "save_strategy": "epoch", "eval_steps": None, "save_steps": None}
    steps = t.eval_every if t.eval_every != "epoch" else max(1, t.max_steps)
    return {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": steps, "save_steps": steps}


def checkpointing_argument(enabled: bool) -> dict[str, bool]:
    """Activation (gradient) checkpointing under transformers' current name; `gradient_checkpointing` is its
    deprecated alias (a FutureWarning on every run) in the versions that have `activation_checkpointing`."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return {"activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing": enabled}


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
        label_smoothing_factor=t.label_smoothing,
        warmup_steps=t.warmup_ratio,
        optim="adamw_torch_fused",  # one fused kernel per step, on CPU too (torch >= 2.4)
        lr_scheduler_type="constant_with_warmup" if t.lr_scheduler == "constant" else t.lr_scheduler,
        **evaluation_schedule(t),
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=t.metric_for_best_model,
        greater_is_better=t.metric_for_best_model != "loss",
        save_total_limit=2,
        save_only_model=False,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        **checkpointing_argument(t.gradient_checkpointing),
        torch_compile=t.compile,
        ddp_backend="gloo" if device == "cpu" and distributed.in_worker() else None,
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


def step_timer():
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


def checkpoint_every(steps: int):
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


def best_epoch(history: list[dict[str, float]], metric: str) -> float | None:
    scored = [row for row in history if f"val_{metric}" in row]
    if not scored:
        return None
    pick = min if metric == "loss" else max
    return pick(scored, key=lambda row: row[f"val_{metric}"])["epoch"]


def kept_epoch(state: Any, history: list[dict[str, float]], metric: str) -> float | None:
    """The epoch of the checkpoint the Trainer kept as best (`load_best_model_at_end`): the evaluation at its
    `best_global_step`; from the history's best value when the state does not say."""
    step = getattr(state, "best_global_step", None)
    for entry in state.log_history if step else []:
        if entry.get("step") == step and "epoch" in entry and any(key.startswith("eval_") for key in entry):
            return round(float(entry["epoch"]), 4)
    return best_epoch(history, metric)
