"""What `tunepipe reproduce` refuses before it creates anything (a lineage without a commit, a dirty registration
unless allowed, data that no DVC version records, a commit that does not hold tunepipe's code), and its verdict:
what differs, and which library versions, device or precision may explain it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.commands.reproduce import MetricRow, ReproduceError, check_lineage, judge, step_environment

CLEAN = {
    "git": {"commit": "a" * 40, "dirty": "False"},
    "data": {"path": "data/d.csv", "md5": "m1", "dvc_md5": "m1"},
}


def lineage(**changes: dict) -> dict:
    return {key: {**value, **changes.get(key, {})} for key, value in CLEAN.items()}


def test_a_clean_lineage_passes_without_notes():
    assert check_lineage(CLEAN, "fs/1", allow_dirty=False) == []
    assert check_lineage(lineage(data={"dvc_md5": "None"}), "fs/1", allow_dirty=False) == []  # data in git


@pytest.mark.parametrize("commit", ["unknown", None])
def test_no_commit_is_refused(commit):
    with pytest.raises(ReproduceError, match="outside a git repository"):
        check_lineage(lineage(git={"commit": commit}), "fs/1", allow_dirty=True)


@pytest.mark.parametrize(("dirty", "state"), [("True", "uncommitted changes"), ("None", "an unknown state")])
def test_dirty_is_refused_unless_allowed_then_noted(dirty, state):
    with pytest.raises(ReproduceError, match=rf"work tree with {state} \(git.dirty={dirty}\).*--allow-dirty"):
        check_lineage(lineage(git={"dirty": dirty}), "fs/1", allow_dirty=False)
    notes = check_lineage(lineage(git={"dirty": dirty}), "fs/1", allow_dirty=True)
    assert notes == [f"registered from a work tree with {state} (git.dirty={dirty}); rebuilt from the commit anyway"]


def test_data_changed_without_a_dvc_version_is_refused():
    with pytest.raises(ReproduceError, match=r"md5 m2, which no DVC version records \(its \.dvc pointer named m1\)"):
        check_lineage(lineage(data={"md5": "m2"}), "fs/1", allow_dirty=False)
    with pytest.raises(ReproduceError, match="records no data md5"):
        check_lineage(lineage(data={"md5": "None"}), "fs/1", allow_dirty=False)


def test_a_commit_without_tunepipe_code_needs_code_installed(tmp_path: Path):
    with pytest.raises(ReproduceError, match=r"holds no pipeline_lib/ and flows/cli.py.*--code installed"):
        step_environment(tmp_path, tmp_path, "commit", "b" * 40)
    env, code = step_environment(tmp_path, tmp_path, "installed", "b" * 40)
    assert code.endswith("(installed)") and "MLFLOW_TRACKING_URI" not in env


SAME_ENV = {"device": {"recorded": "cpu", "reproduced": "cpu"}, "precision": {"recorded": "fp32", "reproduced": "fp32"}}
SPLITS = {"test": {"recorded": "x", "reproduced": "x", "same": True}}
HISTORY = {"epochs": 1, "values": 4, "max_diff": 0.0, "within": True}


def rows(diff: float, tolerance: float = 0.0) -> list[MetricRow]:
    return [MetricRow("accuracy", 0.8, 0.8 + diff, diff, diff <= tolerance), MetricRow("macro_f1", 0.7, 0.7, 0, True)]


def test_verdict_exact_match():
    ok, reason = judge(rows(0), HISTORY, SPLITS, {}, SAME_ENV, True, 0.0)
    assert ok and reason == "every test metric and training-history value within 0 of the recorded one"


def test_verdict_names_the_differing_metric_and_the_library_versions_that_differ():
    libraries = {"torch": ["2.12.0", "2.13.0"], "transformers": ["5.23.0", "5.24.0"]}
    ok, reason = judge(rows(0.02), HISTORY, SPLITS, libraries, SAME_ENV, True, 0.0)
    assert not ok
    assert reason == (
        "1 test metric(s) differ by more than 0 (accuracy); "
        "this environment differs: torch 2.12.0 -> 2.13.0, transformers 5.23.0 -> 5.24.0"
    )


def test_verdict_names_device_and_precision_and_an_unexplained_difference():
    gpu = {"device": {"recorded": "cuda", "reproduced": "cpu"}, "precision": {"recorded": "bf16", "reproduced": "fp32"}}
    ok, reason = judge(rows(0.02), HISTORY, SPLITS, {}, gpu, True, 0.0)
    assert not ok and reason.endswith("this environment differs: device cuda -> cpu, precision bf16 -> fp32")
    drifted = {**HISTORY, "max_diff": 1e-7, "within": False}
    ok, reason = judge(rows(0), drifted, SPLITS, {}, SAME_ENV, True, 0.0)
    assert not ok and reason.startswith("the training history differs by up to 1e-07")
    assert reason.endswith(
        "same library versions, device and precision: the difference is not explained by the environment"
    )
    ok, reason = judge(rows(0.02), None, SPLITS, {}, SAME_ENV, False, 0.0)
    assert reason.endswith("the library versions of the registration are unknown")


def test_verdict_within_a_tolerance_and_a_split_that_differs():
    assert judge(rows(0.004, tolerance=0.005), None, SPLITS, {}, SAME_ENV, True, 0.005)[0]
    changed = {"test": {"recorded": "x", "reproduced": "y", "same": False}}
    ok, reason = judge(rows(0), HISTORY, changed, {}, SAME_ENV, True, 0.0)
    assert not ok and reason.startswith("split test differs from the recorded one")
