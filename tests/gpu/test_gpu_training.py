"""GPU-only checks (skipped without CUDA): bf16 training and torch.compile through the real train step."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET
from pipeline_lib.layout import RunDir
from pipeline_lib.steps import run_step

pytestmark = pytest.mark.gpu


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pd.read_csv(SEED_DATASET).groupby("label").head(30).to_csv(tmp_path / "sample.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("extra", [["train.precision=bf16"], ["train.precision=auto", "train.compile=true"]])
def test_train_step_on_cuda(tiny: Path, extra: list[str]):
    cfg = load_config(None, ["data.path=sample.csv", "train.max_steps=8", "gates.floors={}", *extra])
    run = RunDir(tiny / "run")
    for step in ("validate", "tokenize", "train", "export", "evaluate"):
        run_step(step, cfg, run)
    summary = json.loads(run.train_summary.read_text())
    assert summary["device"] == "cuda" and summary["precision"] == "bf16"
    assert summary["global_step"] == 8
    assert json.loads(run.export_summary.read_text())["agreement"] >= 0.99
