"""bench/recipe.py's sections: one per dataset, and `--keep-rows` keeping the rows a section holds (the plain loop's
40 minutes on 50Agree) so that a later run adds ablations beside them, the speed column still against the kept plain
loop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))
import _results  # noqa: E402
import recipe  # noqa: E402


def args(seeds: list[int]) -> argparse.Namespace:
    return argparse.Namespace(seeds=seeds, max_rows=None)


def outcome(val: float, test: float, accuracy: float, seconds: float, steps: float | None = None) -> recipe.Outcome:
    return recipe.Outcome(
        val_metric=val, test_metric=test, test_accuracy=accuracy, train_seconds=seconds, step_seconds=steps
    )


def results_file(monkeypatch, tmp_path: Path) -> Path:
    """A RESULTS.md of the test's own that the bench writes into, with a fixed machine line and commit."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    for module in (_results, recipe):
        monkeypatch.setattr(module, "RESULTS", results)
    monkeypatch.setattr(_results, "HISTORY", tmp_path / "history")
    monkeypatch.setattr(recipe, "machine", lambda: "test machine")
    monkeypatch.setattr(_results, "commit", lambda: "abc1234")
    monkeypatch.setattr(recipe, "bf16_cpu", lambda: False)  # the sections of a CPU without bf16 (see the bf16 test)
    return results


def test_a_later_run_keeps_the_rows_and_adds_its_own(monkeypatch, tmp_path: Path):
    results = results_file(monkeypatch, tmp_path)

    plain = recipe.table_row(recipe.PLAIN, [outcome(0.80, 0.84, 0.85, 780.0), outcome(0.82, 0.80, 0.83, 776.0)], None)
    default = recipe.table_row(recipe.DEFAULT, [outcome(0.81, 0.81, 0.83, 440.0, 389.0)] * 2, 778.0)
    split_rows = {"train": 80, "validation": 10, "test": 10}
    recipe.write_dataset_section(
        "50agree", split_rows, {recipe.PLAIN: plain, recipe.DEFAULT: default}, args([1, 2]), ""
    )

    kept, earlier = recipe.kept_rows("50agree", [1, 2])
    assert list(kept) == [recipe.PLAIN, recipe.DEFAULT] and earlier.startswith("Run ")
    assert recipe.row_means(kept[recipe.PLAIN]) == (0.81, 0.82, 0.84, 778.0)
    assert recipe.kept_rows("50agree", [1, 2, 3]) == ({}, "")  # other seeds: nothing to keep
    assert recipe.kept_rows("allagree", [1, 2]) == ({}, "")

    added = recipe.table_row("default, lr 3e-5", [outcome(0.83, 0.85, 0.86, 389.0)] * 2, recipe.row_means(plain)[3])
    recipe.write_dataset_section("50agree", split_rows, {**kept, "default, lr 3e-5": added}, args([1, 2]), earlier)
    text = results.read_text()
    assert text.count("<!-- recipe_50agree:start -->") == 1 and len(list((tmp_path / "history").iterdir())) == 1
    assert "| default, lr 3e-5 | 0.8300 ± 0.0000 | 0.8500 ± 0.0000 | 0.8600 ± 0.0000 | 389 s | 2.00x |" in text
    assert (
        f"| {recipe.DEFAULT} | 0.8100 ± 0.0000 | 0.8100 ± 0.0000 | 0.8300 ± 0.0000 | 440 s | 1.77x | 389 s | 2.00x |"
        in text
    )
    assert "Rows kept from earlier runs: Run " in text
    again, stamps = recipe.kept_rows("50agree", [1, 2])  # a third run keeps both runs' rows, naming both runs
    assert list(again) == [recipe.PLAIN, recipe.DEFAULT, "default, lr 3e-5"] and stamps.count("Run ") == 2
    recipe.write_dataset_section("50agree", split_rows, again, args([1, 2]), stamps, default_kept=True)
    assert results.read_text().count("Rows kept from earlier runs: Run ") == 1
    assert "(2 seeds; the default row kept from an earlier run, see the section)" in results.read_text()
    summary = [line for line in text.splitlines() if line.startswith("| Default recipe vs the plain loop, FPB 50agree")]
    assert len(summary) == 1 and "default test macro-F1 0.8100 vs plain 0.8200" in summary[0]
    assert "1.77x its speed (2.00x counting optimizer steps only, as the plain loop is timed) (2 seeds)" in summary[0]


def test_a_cpu_with_bf16_writes_and_keeps_sections_of_its_own(monkeypatch, tmp_path: Path):
    """On a CPU with AMX / AVX-512 BF16 the same dataset gets a `_bf16` section, its own question in the summary; the
    section of a CPU without bf16 stays as it was, and each machine keeps only its own rows."""
    results = results_file(monkeypatch, tmp_path)
    split_rows = {"train": 80, "validation": 10, "test": 10}
    plain = recipe.table_row(recipe.PLAIN, [outcome(0.80, 0.84, 0.85, 780.0)] * 2, None)
    slow = recipe.table_row(recipe.DEFAULT, [outcome(0.81, 0.81, 0.83, 440.0, 389.0)] * 2, 780.0)
    recipe.write_dataset_section("50agree", split_rows, {recipe.PLAIN: plain, recipe.DEFAULT: slow}, args([1, 2]), "")
    monkeypatch.setattr(recipe, "bf16_cpu", lambda: True)
    assert recipe.kept_rows("50agree", [1, 2]) == ({}, "")  # the other machine's rows are not this one's
    fast = recipe.table_row(recipe.DEFAULT, [outcome(0.82, 0.85, 0.86, 390.0, 360.0)] * 2, 780.0)
    recipe.write_dataset_section("50agree", split_rows, {recipe.PLAIN: plain, recipe.DEFAULT: fast}, args([1, 2]), "")
    text = results.read_text()
    assert "<!-- recipe_50agree:start -->" in text and "<!-- recipe_50agree_bf16:start -->" in text
    assert "## Default recipe against the plain loop, FPB 50agree, on a CPU with bf16 instructions (issue 30)" in text
    assert not (tmp_path / "history").exists()  # nothing replaced
    summary = [line for line in text.splitlines() if line.startswith("| Default recipe vs the plain loop, FPB 50")]
    assert [line.rsplit("| `", 1)[1] for line in summary] == ["recipe_50agree` |", "recipe_50agree_bf16` |"]
    assert list(recipe.kept_rows("50agree", [1, 2])[0]) == [recipe.PLAIN, recipe.DEFAULT]
    assert recipe.row_means(recipe.kept_rows("50agree", [1, 2])[0][recipe.DEFAULT])[3] == 390.0


def test_a_row_from_before_the_steps_only_columns_reads_as_not_measured():
    old = "| default, lr 3e-5 | 0.8300 ± 0.0000 | 0.8500 ± 0.0000 | 0.8600 ± 0.0000 | 389 s | 2.00x |"
    assert recipe.full_width(old) == old + " — | — |"
    assert recipe.row_means(recipe.full_width(old)) == (0.83, 0.85, 0.86, 389.0)
    assert recipe.steps_only(recipe.full_width(old)) == ""


def test_the_ner_section_names_entity_f1_and_the_ner_plain_loop(monkeypatch, tmp_path: Path):
    results = results_file(monkeypatch, tmp_path)

    spec = recipe.DATASETS["conll2000"]
    assert spec.tagged and spec.plain == recipe.PLAIN_NER
    plain = recipe.table_row(spec.plain, [outcome(0.70, 0.66, 0.93, 300.0)] * 2, None)
    default = recipe.table_row(recipe.DEFAULT, [outcome(0.75, 0.70, 0.94, 150.0)] * 2, 300.0)
    rows = {"train": 2000, "validation": 3250, "test": 3453}
    recipe.write_dataset_section("conll2000", rows, {spec.plain: plain, recipe.DEFAULT: default}, args([1, 2]), "")
    text = results.read_text()
    assert "| recipe | val entity F1 | test entity F1 | test token accuracy | train time | speed vs plain |" in text
    assert "eng.testa / eng.testb; train/val/test 2000/3250/3453" in text
    summary = [line for line in text.splitlines() if line.startswith("| Default recipe vs the plain loop, CoNLL")]
    assert len(summary) == 1 and "default test entity F1 0.7000 vs plain 0.6600 (val 0.7500 vs 0.7000)" in summary[0]
    assert "2.00x its speed" in summary[0]
    assert list(recipe.kept_rows("conll2000", [1, 2])[0]) == [spec.plain, recipe.DEFAULT]


def test_the_speed_check_sets_steps_against_steps_and_whole_against_whole(monkeypatch, tmp_path: Path):
    results = results_file(monkeypatch, tmp_path)
    monkeypatch.setattr(recipe, "split_files", lambda spec, workdir, max_rows, overrides: workdir / "splits.parquet")
    plain = {42: (80.0, 88.0), 43: (90.0, 99.0)}  # steps, whole
    ours = {42: (40.0, 46.0), 43: (50.0, 55.0)}
    monkeypatch.setattr(
        recipe,
        "plain_loop",
        lambda splits, seed, epochs: recipe.Outcome(0.8, 0.8, 0.8, plain[seed][0], whole_seconds=plain[seed][1]),
    )
    seen: list[list[str]] = []

    def tunepipe(spec, splits, seed, overrides):
        seen.append(overrides)
        return recipe.Outcome(0.8, 0.8, 0.8, train_seconds=ours[seed][1], step_seconds=ours[seed][0])

    monkeypatch.setattr(recipe, "tunepipe_recipe", tunepipe)
    recipe.speed_check(["allagree"], [42, 43], [])

    assert seen == [["train.epochs=1"], ["train.epochs=1"]]  # one epoch each, the default otherwise
    text = results.read_text()
    # steps 85 / 45 = 1.89x (2.00x, 1.80x); whole 93.5 / 50.5 = 1.85x
    assert "| FPB allagree | 2 | 85.0 s | 45.0 s | 1.89x (2.00x, 1.80x) | 93.5 s | 50.5 s | 1.85x |" in text
    summary = [line for line in text.splitlines() if line.startswith("| Default recipe's training speed")]
    assert len(summary) == 1 and "FPB allagree: 1.89x (2.00x, 1.80x) steps only, 1.85x whole" in summary[0]
