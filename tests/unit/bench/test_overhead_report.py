"""bench/overhead.py's rows of the summary table: the overhead with and without the label check, against the
dataset's own target."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))
import overhead  # noqa: E402


def test_headline_rows_state_both_shares_and_the_target():
    data = {"fpb": overhead.Dataset("fpb", "configs/x.yaml", Path("x"), "Financial PhraseBank 50Agree", 3)}
    pipe = overhead.PipelineRun(wall=330.0, lines=[], steps={"train": 250.0}, label_check=40.0)
    results = {"fpb": {"after": {"raw": {"train_wall": 250.0}, "pipeline": pipe}}}
    [(question, figure, target)] = overhead.headline_rows(results, data)
    assert question == "Pipeline overhead: Financial PhraseBank 50Agree"
    assert "all but training 80.0 s = 32.0% of the train step (250 s)" in figure
    assert "without the label check 40.0 s = 16.0%" in figure
    assert target == "≤ 5% of the train step"
    assert "own train step" not in figure  # no train summary: no second share

    pipe.train_summary = {"seconds": 260.0}  # the pipeline's own train step, slower than the raw arm's this time
    [(_, figure, _)] = overhead.headline_rows(results, data)
    assert "against its own train step (260 s): 80.0 s = 30.8%" in figure
