"""A tiny labelled split for tests that train the real model for a few steps: twelve sentences, three labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.layout import SPLITS, RunDir

TEXTS = {
    "positive": ["Profit rose sharply", "Sales grew 5 %", "Orders doubled", "The margin improved"],
    "negative": ["Sales fell", "The loss widened", "Orders dropped", "The outlook was cut"],
    "neutral": ["The board met", "The report is out", "It has 120 staff", "Results come in May"],
}
ROWS = [(text, label) for label, texts in TEXTS.items() for text in texts]


def tiny_config(*extra: str) -> PipelineConfig:
    """The default config on the tiny split: a store in the working directory, batch 4, a high learning rate."""
    base = ["paths.store=store", "data.labels=[negative, neutral, positive]", "train.batch_size=4"]
    return load_config(None, [*base, "train.learning_rate=1e-3", *extra])


def tokenized_run(root: Path, cfg: PipelineConfig) -> RunDir:
    """A run directory at `root` whose every split holds all twelve rows, tokenized by the tokenize step."""
    from pipeline_lib.steps.tokenize import tokenize

    run = RunDir(root)
    for split in SPLITS:
        run.split_file(split).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(run.split_file(split), index=False)
    tokenize(cfg, run)
    return run
