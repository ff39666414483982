"""`tunepipe init` proposes the epoch cap and the validation interval from the training split's size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pipeline_lib.commands.init import MAX_EPOCHS, config_text, inspect, propose_schedule
from pipeline_lib.config import PipelineConfig


def test_small_data_gets_more_epochs_with_the_reason():
    train, choices = propose_schedule("token_classification", 1500)  # a 1.9k-sentence NER set's training split
    assert train == {"epochs": MAX_EPOCHS, "eval_every": "epoch"}
    why = dict(choices)
    assert "47 steps an epoch at batch 32" in why["train.epochs"] and "recipe's 4 epochs" in why["train.epochs"]
    assert "2 validations without improvement" in why["train.epochs"]
    train, _ = propose_schedule("sequence_classification", 2000)  # 125 steps an epoch: 8 epochs reach 1000 steps
    assert train == {"epochs": 8, "eval_every": "epoch"}


def test_large_data_keeps_the_recipe_and_validates_inside_an_epoch():
    train, choices = propose_schedule("token_classification", 14_000)  # CoNLL's eng.train: the recipe's own data
    assert train == {"epochs": 4, "eval_every": "epoch"}
    train, choices = propose_schedule("sequence_classification", 30_000)
    assert train == {"epochs": 5, "eval_every": 500}
    assert "1875 steps" in dict(choices)["train.eval_every"]


def test_the_written_config_carries_the_proposal_and_its_reason(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [(f"Sales rose {i} % in quarter {i}", "up") for i in range(60)]
    rows += [(f"Sales fell {i} % in quarter {i}", "down") for i in range(60)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "small.csv", index=False)
    found = inspect(tmp_path / "small.csv")
    text = config_text(found)
    config = PipelineConfig.model_validate(yaml.safe_load(text))
    assert config.train.epochs == MAX_EPOCHS and config.train.eval_every == "epoch"
    assert f"# train.epochs: {MAX_EPOCHS}: the cap; {found.rows['train']} training rows" in text
    assert "# train.eval_every: epoch:" in text
