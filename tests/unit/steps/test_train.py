"""Epochs by validation: `train.epochs` is the cap, the run stops once the validation metric has not improved for
`train.early_stopping_patience` evaluations (every `train.eval_every` steps or epoch), and the best model is kept.

The real model, Trainer and EarlyStoppingCallback train on a tiny split; only the validation metric's values are
scripted (a callback sets them before early stopping and best-model selection read them), so that "stalls" and
"keeps improving" are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from pipeline_lib.layout import RunDir
from pipeline_lib.steps.train import train
from pipeline_lib.training.trainer import evaluation_schedule
from tests.unit.tiny import tiny_config, tokenized_run

STEPS_PER_EPOCH = 3  # 12 training rows, batch 4


class ScriptedMetric(TrainerCallback):
    """Sets the validation macro-F1 of the n-th evaluation to `values[n]`, and fingerprints the weights then."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.weights = values, []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics["eval_macro_f1"] = self.values[len(self.weights)]
        self.weights.append(fingerprint(model))


def fingerprint(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.fixture
def tokenized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    monkeypatch.chdir(tmp_path)  # the config's store is ./store
    return tokenized_run(tmp_path / "run", config())


def config(*extra: str):
    return tiny_config("train.epochs=2", "train.eval_every=1", *extra)


def test_a_run_stops_when_validation_stalls_and_keeps_the_best_model(tokenized: RunDir):
    script = ScriptedMetric([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])
    result = train(config("train.early_stopping_patience=2"), tokenized, extra_callbacks=[script])
    # evaluations after steps 1, 2, 3, 4: the best (0.7) at step 2, then two without improvement: stop at step 4
    assert result.global_step == 4 and result.stopped_early and len(script.weights) == 4
    assert result.best_metric == pytest.approx(0.7)
    assert result.best_epoch == pytest.approx(2 / STEPS_PER_EPOCH, abs=1e-3)
    from transformers import AutoModelForSequenceClassification

    kept = AutoModelForSequenceClassification.from_pretrained(str(tokenized.model_dir))
    assert fingerprint(kept) == pytest.approx(script.weights[1], rel=1e-6)  # the model of the best evaluation
    assert fingerprint(kept) != pytest.approx(script.weights[-1], rel=1e-6)


def test_a_run_that_keeps_improving_trains_to_the_epoch_cap(tokenized: RunDir):
    script = ScriptedMetric([0.1 * n for n in range(1, 8)])
    result = train(config("train.early_stopping_patience=1"), tokenized, extra_callbacks=[script])
    assert result.global_step == 2 * STEPS_PER_EPOCH and not result.stopped_early
    assert result.epochs_run == pytest.approx(2.0) and len(script.weights) == 6  # after every step
    assert result.best_metric == pytest.approx(0.6) and result.best_epoch == pytest.approx(2.0)


def test_evaluation_schedule():
    t = config().train
    assert evaluation_schedule(t)["eval_steps"] == 1 and evaluation_schedule(t)["save_strategy"] == "steps"
    per_epoch = config("train.eval_every=epoch").train
    assert evaluation_schedule(per_epoch) == {
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "eval_steps": None,
        "save_steps": None,
    }
    assert evaluation_schedule(config("train.eval_every=epoch", "train.max_steps=6").train)["eval_steps"] == 6
    with pytest.raises(Exception, match="eval_every"):
        config("train.eval_every=0")
