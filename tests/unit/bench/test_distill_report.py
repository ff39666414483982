"""bench/distill.py's section: each model's mean ± sd over its seeds, and the distilled student's verdict against
the targets, with the plain student's figure beside it and by how much a target is missed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))
import distill  # noqa: E402


def row(name: str, seed: int, accuracy: float, macro_f1: float) -> dict:
    return {
        "name": name,
        "seed": seed,
        "metrics": {"accuracy": accuracy, "macro_f1": macro_f1},
        "rows": {"train": 80, "validation": 10, "test": 10},
        "epochs_run": 3,
        "train_s": 100.0,
        "wall_s": 120.0,
        "runtime": "onnxruntime-fp32",
        "p50_ms_batch1": 5.0 + seed - 42,
        "samples_per_s_batch32": 200.0,
    }


def one_seed_groups(label: str, extra: dict) -> dict[str, list[dict]]:
    """Teacher, plain and distilled on seed 42, and one more group `label` holding `extra`."""
    return {
        "mpnet-base teacher": [row("teacher-42", 42, 0.88, 0.87)],
        "default model, plain": [row("plain-42", 42, 0.83, 0.82)],
        distill.DISTILLED: [row("distilled-42", 42, 0.84, 0.82)],
        label: [extra],
    }


def test_the_distilled_student_is_judged_against_the_targets_beside_the_plain_one(monkeypatch):
    monkeypatch.setattr(distill, "machine", lambda: "test machine")
    groups = {
        "mpnet-base teacher": [row("teacher-42", 42, 0.88, 0.87)],
        "default model, plain": [row("plain-42", 42, 0.83, 0.81), row("plain-43", 43, 0.85, 0.83)],
        "default model, distilled": [row("distilled-42", 42, 0.87, 0.83), row("distilled-43", 43, 0.87, 0.84)],
    }
    args = argparse.Namespace(section="distill", alpha=0.5, temperature=2.0)
    body = distill.report("FPB", groups, {"accuracy": 0.86, "macro_f1": 0.84}, args)

    assert "| default model, plain | 42, 43 | 0.8400 ± 0.0141 | 0.8200 ± 0.0141 |" in body
    assert "- accuracy: distilled mean 0.8700; plain 0.8400; target ≥ 0.86: **met**." in body
    assert "- macro_f1: distilled mean 0.8350; plain 0.8200; target ≥ 0.84: **missed by 0.0050**." in body
    assert "| 5.5 ms | 200.0 rows/s |" in body  # the median over seeds of the export step's timing
    [(question, figure, target)] = distill.summary("FPB", groups, {"macro_f1": 0.84})
    assert "mpnet-base teacher: accuracy 0.8800, macro_f1 0.8700 (1 seed)" in figure
    assert question == "FPB: teacher, plain and distilled student" and target == "distilled: macro_f1 ≥ 0.84"


def test_an_ner_section_shows_entity_metrics_and_the_teacher_as_the_reference(monkeypatch):
    monkeypatch.setattr(distill, "machine", lambda: "test machine")

    def tagged(name: str, seed: int, f1: float) -> dict:
        return {**row(name, seed, 0, 0), "metrics": {"entity_f1": f1, "token_accuracy": 0.9}}

    groups = {
        "mpnet-base teacher": [tagged("teacher-42", 42, 0.86)],
        "default model, plain": [tagged("plain-42", 42, 0.80)],
        "default model, distilled": [tagged("distilled-42", 42, 0.82)],
    }
    spec = distill.Distillation("CoNLL", "configs/conll2003.yaml", Path("conll"), (), {}, ("entity_f1",), "testb")
    args = argparse.Namespace(section="distill_conll", alpha=0.5, temperature=2.0)
    body = distill.report(spec.title, groups, spec.targets, args, spec)
    assert "| model | seeds | test entity_f1 | train s (mean) |" in body and "macro" not in body
    assert "| distilled-42 | 42 | 80/10/10 | 3 | 0.8200 | 120 |" in body
    assert "No target set: the teacher's figures above are the reference." in body
    assert "Split: testb; recipe: configs/conll2003.yaml" in body
    [(_, figure, target)] = distill.summary(spec.title, groups, spec.targets, spec.metrics)
    assert "default model, distilled: entity_f1 0.8200 (1 seed)" in figure
    assert target == "distilled: the teacher's figures, no target"


def test_a_kept_work_folder_gives_back_its_finished_runs_and_refuses_other_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "timed_steps", lambda *a: pytest.fail("a kept run was trained again"))
    base = [str(distill.REPO / "configs" / "financial_phrasebank.yaml")]
    sets = ["data.path=/data/fpb.txt", "train.seed=43"]
    recipe = distill.recipe_of(base, sets)
    kept = {**row("plain-43", 43, 0.8, 0.79), "sets": sets, "recipe": recipe}
    (tmp_path / "plain-43").mkdir()
    (tmp_path / "plain-43" / distill.ROW_FILE).write_text(json.dumps(kept))

    assert distill.train_one(base, sets, tmp_path, "plain-43")["metrics"]["macro_f1"] == 0.79
    with pytest.raises(SystemExit, match=r"plain-43.*other settings.*train\.seed=43"):
        distill.train_one(base, ["data.path=/data/fpb.txt", "train.seed=44"], tmp_path, "plain-43")

    # the same --set overrides after the config file's recipe changed: refused, naming the field
    recipe["train"]["epochs"], recipe["train"]["a_field_added_later"] = 7, 1
    (tmp_path / "plain-43" / distill.ROW_FILE).write_text(json.dumps({**kept, "recipe": recipe}))
    with pytest.raises(SystemExit, match=r"recipe changed since that run \(train\.epochs: 7 → \d"):
        distill.train_one(base, sets, tmp_path, "plain-43")


def test_conll_finance_sentences_keep_company_news_once_and_drop_headlines_sport_and_fragments(tmp_path):
    def sentence(text: str) -> str:
        return "".join(f"{token} NN I-NP O\n" for token in text.split()) + "\n"

    news = "Net profit rose 12 percent to 45 million guilders in the first half , the company said ."
    files = {
        "eng.train": "-DOCSTART- -X- O O\n\n"
        + sentence(news)
        + sentence("SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .")  # a headline
        + sentence("Shares fell .")  # too short
        + sentence(
            "The striker scored twice in the second half as the home side won the match 3-1 ."
        ),  # no finance word
        "eng.testa": sentence(news),  # the same sentence in another file: kept once
        "eng.testb": sentence(
            "Analysts expect the bank to report higher earnings when it announces results next week ."
        ),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")

    out = tmp_path / "unlabeled.txt"
    assert distill.conll_finance_sentences(tmp_path, out) == 2
    assert out.read_text(encoding="utf-8").splitlines() == [
        news,
        "Analysts expect the bank to report higher earnings when it announces results next week .",
    ]


def test_distillation_with_unlabeled_texts_gets_its_own_verdict_beside_the_plain_student(monkeypatch):
    monkeypatch.setattr(distill, "machine", lambda: "test machine")
    groups = one_seed_groups(distill.WITH_UNLABELED, row("distilled-unlabeled-42", 42, 0.86, 0.845))
    args = argparse.Namespace(section="distill", alpha=0.5, temperature=2.0)
    body = distill.report("FPB", groups, {"macro_f1": 0.84}, args)

    assert "- macro_f1: distilled mean 0.8200; plain 0.8200; target ≥ 0.84: **missed by 0.0200**." in body
    assert "- macro_f1: distilled + unlabeled mean 0.8450; plain 0.8200; target ≥ 0.84: **met**." in body
    assert "| default model, distilled + unlabeled texts | 42 | 0.8600 | 0.8450 |" in body


def found(best: tuple[float, float], sets: list[str] | None = None) -> dict:
    """A finished alpha and temperature search as `search_alpha_temperature` keeps it."""
    pairs = [((0.5, 2.0), 0.91), ((0.2, 1.0), 0.93), ((0.8, 4.0), None)]
    ran = [
        {
            "number": i,
            "state": "PRUNED" if value is None else "COMPLETE",
            "value": value,
            "params": {"train.distill.alpha": a, "train.distill.temperature": t},
        }
        for i, ((a, t), value) in enumerate(pairs)
    ]
    ran.append({"number": 3, "state": "WAITING", "value": None, "params": {}})  # enqueued, never run
    return {
        "params": {"train.distill.alpha": best[0], "train.distill.temperature": best[1]},
        "best_trial": 1,
        "best_value": 0.93,
        "metric": "macro_f1",
        "ran": ran,
        "finished": 3,
        "wall_s": 600.0,
        "measured": "2026-12-06, abc1234",
        "sets": sets or [],
    }


def test_the_search_section_ranks_trials_by_validation_and_judges_the_searched_student(monkeypatch):
    monkeypatch.setattr(distill, "machine", lambda: "test machine")
    groups = one_seed_groups(distill.SEARCHED, row("distilled-searched-42", 42, 0.86, 0.85))
    args = argparse.Namespace(section="distill", alpha=0.5, temperature=2.0)
    body = distill.report("FPB", groups, {"macro_f1": 0.84}, args, found=found((0.2, 1.0)))

    table = body[body.index("| trial | alpha |") : body.index("Cost:")].strip().splitlines()
    assert table[2:] == [
        "| 1 | 0.2 | 1.0 | 0.9300 | complete |",
        "| 0 | 0.5 | 2.0 | 0.9100 | complete |",
        "| 2 | 0.8 | 4.0 | — | pruned |",
    ]
    assert "best trial 1, alpha 0.2, T 1, validation 0.9300" in body
    assert "the median pruner stopped 1 of them after their first epochs" in body  # a search without "pruner": median
    assert f"the row `{distill.SEARCHED}` trains every seed with them" in body
    assert (
        "- macro_f1: distilled with the searched alpha and T mean 0.8500; plain 0.8200; target ≥ 0.84: **met**." in body
    )
    assert "Cost: 1080 s wall in all" in body  # three runs of 120 s and the search's 600 s

    kept = distill.report("FPB", groups, {"macro_f1": 0.84}, args, found={**found((0.5, 2.0)), "pruner": "none"})
    assert "the given values win, so the distilled rows above are the searched recipe" in kept
    assert "every trial trained in full" in kept


def test_a_kept_search_is_read_back_and_one_with_other_settings_refused(tmp_path, monkeypatch):
    import pipeline_lib.commands.tune as tune_command

    monkeypatch.setattr(tune_command, "tune", lambda *a: pytest.fail("a kept search ran again"))
    sets = ["data.path=/data/fpb.txt", "train.seed=42"]
    (tmp_path / distill.SEARCH_FILE).write_text(json.dumps(found((0.2, 1.0), sets)))

    assert distill.search_alpha_temperature(["base.yaml"], sets, tmp_path, 3)["params"]["train.distill.alpha"] == 0.2
    with pytest.raises(SystemExit, match=rf"{distill.SEARCH_FILE}.*other settings.*train\.seed=42"):
        distill.search_alpha_temperature(["base.yaml"], [*sets[:1], "train.seed=43"], tmp_path, 3)
