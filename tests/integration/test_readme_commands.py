"""The README's commands on every kind of model the tool registers, through the real CLI in a subprocess: a
classification model whose runtime table has an untimed candidate, a student distilled from it, and an NER model (no
runtime table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.retrain import retrain
from pipeline_lib.runtime import selection

from . import conftest
from .test_ner_flow import FAST as NER_FAST
from .test_ner_flow import SENTENCES, _head

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NER_CONFIG = str(REPO / "configs" / "conll2003.yaml")
# the serving runtime chosen by measurement, on a timing sample of its own (no other test's cached choice)
CLASSIFICATION = conftest.overrides("export.select_runtime=true", "export.runtime_timing_sentences=5")
UNDER_THE_FLOOR = "onnxruntime-int8-dynamic"
DISTILLED = "distilled-sentiment"  # a student of financial-sentiment's champion, registered under its own name
DISTILL = [f"registry.model_name={DISTILLED}", "train.distill.teacher=financial-sentiment@champion"]


@pytest.fixture(scope="module")
def registered(workspace: Path, shared_data: Path) -> dict[str, dict]:
    """Both tasks registered in one store: classification (one int8 candidate under the agreement floor, so never
    timed), a classification student distilled from it, and NER."""
    real_select = selection.select

    def select_with_a_candidate_under_the_floor(cfg, folder, candidates, *args, **kwargs):
        # the int8 graph where this CPU builds one (int8 dot-product instructions), else the fp32 graph under its
        # name: either way a candidate under the agreement floor, so never timed
        graph, metric, _ = candidates.get(UNDER_THE_FLOOR, candidates["onnxruntime-fp32"])
        return real_select(cfg, folder, {**candidates, UNDER_THE_FLOOR: (graph, metric, 0.0)}, *args, **kwargs)

    (workspace / "conll").mkdir()
    for name, n in SENTENCES.items():
        _head(shared_data / "conll2003" / name, workspace / "conll" / name, n)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        mp.setattr(selection, "select", select_with_a_candidate_under_the_floor)
        registered = {"financial-sentiment": retrain(None, CLASSIFICATION)}
        registered[DISTILLED] = retrain(None, [*CLASSIFICATION, *DISTILL])  # taught by the champion just registered
        registered["conll-ner"] = retrain(NER_CONFIG, [*NER_FAST, *conftest.SHARED_CACHE])
        return registered


def tunepipe(workspace: Path, *args: str) -> str:
    """`tunepipe ARGS` in a fresh interpreter in the workspace; its stdout (the test fails on any traceback)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=workspace, env=env, capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    return done.stdout


def test_runtime_table_says_why_a_candidate_was_not_timed(registered: dict, workspace: Path):
    text = tunepipe(workspace, "lineage", "financial-sentiment@champion", *conftest.cli_sets())
    assert "serving runtime: onnxruntime-" in text
    info = json.loads(tunepipe(workspace, "lineage", "financial-sentiment@champion", "--json"))
    rows = {row["runtime"]: row for row in info["runtime"]["candidates"]}
    # why: the agreement floor, or (where the export builds no int8 graph on this CPU) the missing instructions
    why = rows[UNDER_THE_FLOOR]["untimed"]
    assert why and "p50_ms_batch1" not in rows[UNDER_THE_FLOOR]
    line = next(line for line in text.splitlines() if line.strip().startswith(UNDER_THE_FLOOR))
    assert f"not timed: {why}" in line
    assert "ms @1" in next(line for line in text.splitlines() if line.strip().startswith("onnxruntime-fp32"))
    assert "untimed" not in rows["onnxruntime-fp32"] and rows["onnxruntime-fp32"]["p50_ms_batch1"] > 0


@pytest.mark.parametrize(
    ("name", "text", "task", "metric"),
    [
        ("financial-sentiment", "Operating profit rose to EUR 13.1 mn", "sequence_classification", "macro_f1"),
        ("conll-ner", "EU rejects German call to boycott British lamb .", "token_classification", "entity_f1"),
    ],
)
def test_readme_commands_print_for_each_task(registered: dict, workspace: Path, name, text, task, metric):
    version = registered[name]["registered"]["version"]
    lineage = tunepipe(workspace, "lineage", f"{name}@champion")
    assert lineage.startswith(f"{name} v{version} ") and f" {metric}=" in lineage and "promotion:" in lineage
    info = json.loads(tunepipe(workspace, "lineage", f"{name}@champion", "--json"))
    assert info["name"] == name and info["config"]["task"] == task and metric in info["metrics"]
    ledger = [line.split() for line in tunepipe(workspace, "ledger", name).splitlines()]
    assert [ledger[-1][1], ledger[-1][2]] == ["promote", f"v{version}"], ledger
    predicted = tunepipe(workspace, "predict", "--model", f"{name}@champion", text)
    rows = [json.loads(line) for line in predicted.splitlines()]
    assert len(rows) == 1 and rows[0]["model"] == f"{name}/{version}"
    if task == "token_classification":
        assert isinstance(rows[0]["entities"], list), rows[0]
    else:
        assert rows[0]["label"] in {"negative", "neutral", "positive"}


def test_lineage_names_the_teacher_of_a_distilled_student(registered: dict, workspace: Path):
    teacher_version = registered["financial-sentiment"]["registered"]["version"]
    info = json.loads(tunepipe(workspace, "lineage", f"{DISTILLED}@champion", "--json"))
    teacher = info["distill"]
    assert teacher["teacher"] == f"financial-sentiment/{teacher_version}", teacher
    assert len(teacher["teacher_digest"]) == 32 and (teacher["alpha"], teacher["temperature"]) == ("0.5", "2.0")
    text = tunepipe(workspace, "lineage", f"{DISTILLED}@champion")
    shown = f"distilled from financial-sentiment/{teacher_version} (graph {teacher['teacher_digest'][:12]}, alpha 0.5"
    assert shown in text, text
    plain = json.loads(tunepipe(workspace, "lineage", "financial-sentiment@champion", "--json"))
    assert plain["distill"] is None
