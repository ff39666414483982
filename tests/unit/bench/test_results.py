"""bench/RESULTS.md reads as the current state: a generated summary at the top, one section per question, what a
section replaces moved to bench/history/ with its date and commit."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))
import _results  # noqa: E402

OLD = """# Benchmark results

<!-- overhead:start -->
## Pipeline overhead: the same training with and without the pipeline (issue 7)

| data | overhead |
|---|---|
| fpb | 15.7% |

_Run 2026-12-03 16:24 UTC: `python bench/overhead.py`_
<!-- overhead:end -->

<!-- serving:start -->
## Serving runtimes chosen by measurement (issues 9 and 16)

fastest: int8

_Run 2026-12-03 15:56 UTC: `python bench/serving.py`_
<!-- serving:end -->

<!-- overhead_tiny:start -->
## Pipeline overhead: the same training with and without the pipeline (issue 7)

| data | overhead |
|---|---|
| tiny | 100.3% |

_Run 2026-12-03 17:48 UTC: `python bench/overhead.py --section overhead_tiny`_
<!-- overhead_tiny:end -->
"""


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_results, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(_results, "HISTORY", tmp_path / "history")
    (tmp_path / "RESULTS.md").write_text(OLD)
    return tmp_path / "RESULTS.md"


def titles(text: str) -> list[str]:
    return [_results.question(line) for line in text.splitlines() if line.startswith("## ")]


def test_question_cuts_titles_as_the_hook_does():
    assert _results.question("## Pipeline overhead: the same training (issue 7)") == "## Pipeline overhead"
    assert _results.question("## CoNLL-2003 English NER (eng.train), default model") == "## CoNLL-2003 English NER"


def test_a_new_section_replaces_every_section_of_its_question(results: Path):
    _results.write_section(
        "overhead",
        "## Pipeline overhead: the same training with and without the pipeline (issue 7)\n\n| fpb | 4.9% |",
        [("Pipeline overhead on FPB", "4.9 % of the train step", "≤ 5 %")],
    )
    text = results.read_text()
    assert titles(text).count("## Pipeline overhead") == 1 and "| fpb | 4.9% |" in text
    assert "15.7%" not in text and "100.3%" not in text  # both older sections moved out
    assert text.index("<!-- summary:start -->") < text.index("<!-- serving:start -->")  # the summary on top
    assert text.index("<!-- overhead:start -->") < text.index("<!-- serving:start -->")  # in the old one's place
    history = {path.name: path.read_text() for path in (results.parent / "history").iterdir()}
    assert set(history) == {"2026-12-03-overhead.md", "2026-12-03-overhead_tiny.md"}
    assert "15.7%" in history["2026-12-03-overhead.md"] and "100.3%" in history["2026-12-03-overhead_tiny.md"]
    assert "replaced by its section `overhead`" in history["2026-12-03-overhead_tiny.md"]
    assert "Figures recorded in commit" in history["2026-12-03-overhead.md"]
    stamp = re.search(r"_Run \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC at commit (\S+) on (.+?): `python", text)
    assert stamp and re.search(r"avx512f|avx2|no avx2", stamp.group(2))  # machine and vector ISA named
    rows = _results.summary_rows(text)
    assert len(rows) == 1 and rows[0].startswith("| Pipeline overhead on FPB | 4.9 % of the train step | ≤ 5 % |")
    assert rows[0].endswith("| `overhead` |")


def test_a_bench_replaces_only_the_summary_rows_it_owns(results: Path):
    _results.write_section("serving", "## Serving runtimes chosen by measurement\n\nint8", [("Serving", "1 ms", "—")])
    _results.write_section("overhead", "## Pipeline overhead: again\n\nx", [("Overhead", "5 %", "≤ 5 %")])
    _results.write_section("serving", "## Serving runtimes chosen by measurement\n\nfp32", [("Serving", "2 ms", "—")])
    rows = _results.summary_rows(results.read_text())
    assert [row.split(" | ")[1] for row in rows] == ["5 %", "2 ms"]
    assert len(list((results.parent / "history").glob("*serving*"))) == 2  # each replaced version kept, dated


def test_the_commit_is_dirty_for_changed_code_not_for_what_an_earlier_bench_wrote(monkeypatch, tmp_path: Path):
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "bench").mkdir()
    results, code = tmp_path / "bench" / "RESULTS.md", tmp_path / "bench" / "recipe.py"
    results.write_text("# Benchmark results\n")
    code.write_text("print(1)\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    monkeypatch.setattr(_results, "REPO", tmp_path.resolve())
    monkeypatch.setattr(_results, "RESULTS", results)
    head = _results.commit()
    assert re.fullmatch(r"[0-9a-f]{7,}", head)
    results.write_text("# Benchmark results\n\nan earlier bench's section\n")
    (tmp_path / "bench" / "history.md").write_text("untracked\n")
    assert _results.commit() == head
    code.write_text("print(2)\n")
    assert _results.commit() == head + "+dirty"
