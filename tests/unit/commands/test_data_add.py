"""`tunepipe data add` in a throw-away git + DVC repository with a local remote: good rows become a new
version (file, pointer, commit, remote); rejected rows or a failing push change nothing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.data.versions import SEED_DATASET, file_md5

runner = CliRunner()
DATASET = "news"


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git + DVC repo whose `data/news.csv` (20 rows per label) is versioned and pushed."""
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.email", "t@example.com")
    sh(tmp_path, "git", "config", "user.name", "t")
    sh(tmp_path, "dvc", "init", "-q")
    sh(tmp_path, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    (tmp_path / ".gitignore").write_text(".tunepipe/\n")
    (tmp_path / "data").mkdir()
    seed = pd.read_csv(SEED_DATASET)
    seed.groupby("label", group_keys=False).head(20).to_csv(tmp_path / "data" / f"{DATASET}.csv", index=False)
    sh(tmp_path, "dvc", "add", "-q", f"data/{DATASET}.csv")
    sh(tmp_path, "dvc", "push", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def state(repo: Path) -> dict:
    data = repo / "data" / f"{DATASET}.csv"
    return {
        "md5": file_md5(data),
        "pointer": (repo / "data" / f"{DATASET}.csv.dvc").read_text(),
        "head": sh(repo, "git", "rev-parse", "HEAD"),
        "remote": sorted(p.name for p in (repo / "remote").rglob("*") if p.is_file()),
    }


def unseen_rows(n_per_label: int) -> pd.DataFrame:
    """Rows of the seed dataset that are not in the repo's file."""
    return pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).nth(range(20, 20 + n_per_label))


def test_add_validated_rows_makes_a_new_dvc_version(repo: Path):
    before = state(repo)
    new = repo / "incoming.csv"
    unseen_rows(3).to_csv(new, index=False)

    result = runner.invoke(app, ["data", "add", str(new), "--dataset", DATASET])

    assert result.exit_code == 0, result.output
    after = state(repo)
    assert f"old md5 {before['md5']}" in result.output and f"new md5 {after['md5']}" in result.output
    assert "+9 rows (60 → 69)" in result.output
    assert after["md5"] != before["md5"]
    assert yaml.safe_load(after["pointer"])["outs"][0]["md5"] == after["md5"]
    # one commit holding only the pointer; the remote holds the new content
    assert sh(repo, "git", "rev-list", "--count", "HEAD") == "2"
    assert sh(repo, "git", "show", "--name-only", "--format=", "HEAD").split() == [f"data/{DATASET}.csv.dvc"]
    assert after["md5"] in sh(repo, "git", "log", "-1", "--format=%s")
    assert after["md5"][2:] in after["remote"]
    assert sh(repo, "dvc", "status", "-c", "-q") == ""
    assert sh(repo, "git", "status", "--porcelain", "--untracked-files=no") == ""
    rows = pd.read_csv(repo / "data" / f"{DATASET}.csv")
    assert len(rows) == 69 and list(rows.tail(9)["text"]) == list(unseen_rows(3)["text"])


@pytest.mark.parametrize(
    ("case", "rule", "row"),
    [
        ("unknown_label", "label_in_set", 3),
        ("empty_text", "text_length", 2),
        ("duplicate_of_existing", "text_(unique_in_split|in_two_splits)", None),
    ],
)
def test_rejected_rows_change_nothing(repo: Path, case: str, rule: str, row: int | None):
    before = state(repo)
    rows = unseen_rows(1).reset_index(drop=True)
    if case == "unknown_label":
        rows.loc[1, "label"] = "bullish"
    elif case == "empty_text":
        rows.loc[0, "text"] = ""
    else:
        rows = pd.concat([rows, pd.read_csv(repo / "data" / f"{DATASET}.csv").head(1)], ignore_index=True)
    new = repo / "incoming.csv"
    rows.to_csv(new, index=False)

    result = runner.invoke(app, ["data", "add", str(new), "--dataset", DATASET])

    assert result.exit_code == 1, result.output
    assert re.search(rule, result.output), result.output
    assert f"{new} row {row}" in result.output if row else str(new) in result.output
    assert state(repo) == before
    assert sh(repo, "git", "status", "--porcelain") == "?? incoming.csv"


def test_unreadable_file_names_its_row_and_changes_nothing(repo: Path):
    before = state(repo)
    new = repo / "incoming.csv"
    new.write_text('text,label\n"Profit rose.",positive\n"unterminated,negative\n')
    result = runner.invoke(app, ["data", "add", str(new), "--dataset", DATASET])
    assert result.exit_code == 1 and f"{new}, row 3" in result.output, result.output
    assert state(repo) == before


def test_failed_push_restores_file_and_pointer(repo: Path):
    before = state(repo)
    sh(repo, "dvc", "remote", "modify", "local", "url", str(repo / "blocked" / "remote"))
    (repo / "blocked").write_text("a file where the remote's parent folder should be")
    sh(repo, "git", "commit", "-qam", "point the remote somewhere unwritable")
    head = sh(repo, "git", "rev-parse", "HEAD")
    new = repo / "incoming.csv"
    unseen_rows(1).to_csv(new, index=False)

    result = runner.invoke(app, ["data", "add", str(new), "--dataset", DATASET])

    assert result.exit_code == 1 and "dvc push failed" in result.output, result.output
    after = state(repo)
    assert (after["md5"], after["pointer"]) == (before["md5"], before["pointer"])
    assert after["head"] == head


def test_out_of_sync_dataset_is_refused(repo: Path):
    data = repo / "data" / f"{DATASET}.csv"
    data.write_text(data.read_text() + "Hand edit not versioned.,neutral\n")
    new = repo / "incoming.csv"
    unseen_rows(1).to_csv(new, index=False)
    result = runner.invoke(app, ["data", "add", str(new), "--dataset", DATASET])
    assert result.exit_code == 1 and "changes not recorded" in result.output, result.output


def test_bad_dataset_name_is_refused(repo: Path):
    new = repo / "incoming.csv"
    unseen_rows(1).to_csv(new, index=False)
    result = runner.invoke(app, ["data", "add", str(new), "--dataset", "../etc/passwd"])
    assert result.exit_code == 1 and "dataset name" in result.output


@pytest.fixture
def phrasebank_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> tuple[Path, pd.DataFrame]:
    """git + DVC repo whose `data/news.csv` holds 80 real AllAgree sentences per label; the next 8 per label
    (not in it) are returned for adding."""
    lines = (shared_data / "financial_phrasebank" / "Sentences_AllAgree.txt").read_bytes().decode("iso-8859-1")
    rows = pd.DataFrame([line.rsplit("@", 1) for line in lines.splitlines() if "@" in line], columns=["text", "label"])
    rows = rows.drop_duplicates("text")
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.email", "t@example.com")
    sh(tmp_path, "git", "config", "user.name", "t")
    sh(tmp_path, "dvc", "init", "-q")
    sh(tmp_path, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    (tmp_path / ".gitignore").write_text(".tunepipe/\n")
    (tmp_path / "data").mkdir()
    rows.groupby("label", group_keys=False).head(80).to_csv(tmp_path / "data" / f"{DATASET}.csv", index=False)
    sh(tmp_path, "dvc", "add", "-q", f"data/{DATASET}.csv")
    sh(tmp_path, "dvc", "push", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    return tmp_path, rows.groupby("label", group_keys=False).nth(range(80, 88))


@pytest.mark.integration
def test_data_add_shows_suspect_rows_and_reject_refuses_them(phrasebank_repo: tuple[Path, pd.DataFrame]) -> None:
    repo, new_rows = phrasebank_repo
    new_rows = new_rows.reset_index(drop=True)
    swap = {"positive": "negative", "negative": "positive", "neutral": "positive"}
    wrong = [0, 9, 17]  # one of each label, relabelled
    new_rows.loc[wrong, "label"] = new_rows.loc[wrong, "label"].map(swap)
    incoming = repo / "incoming.csv"
    new_rows.to_csv(incoming, index=False)
    before = state(repo)

    refused = runner.invoke(app, ["data", "add", str(incoming), "--dataset", DATASET, "--reject-label-issues"])
    assert refused.exit_code == 1, refused.output
    assert "refused by --reject-label-issues, nothing was written" in refused.output
    shown = {int(n) for n in re.findall(rf"{re.escape(str(incoming))} row (\d+)", refused.output)}
    planted = {i + 2 for i in wrong}  # CSV lines (header is line 1)
    assert len(shown & planted) >= 2, refused.output  # most of the planted ones, named by the added file's row
    assert len(shown - planted) <= 2, refused.output
    assert state(repo) == before  # nothing written, committed or pushed

    added = runner.invoke(app, ["data", "add", str(incoming), "--dataset", DATASET])
    assert added.exit_code == 0, added.output
    assert "look mislabelled" in added.output and f"{incoming} row" in added.output
    assert state(repo)["md5"] != before["md5"]
