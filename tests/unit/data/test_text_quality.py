"""Damaged-text warnings: examples capped, counts exact (in the grouped line, the report's causes and counts)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.data import text_quality
from pipeline_lib.data.failures import DataValidationError, count_by_rule, group_failures
from pipeline_lib.data.text_quality import text_warnings


def frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "source": "tweets.csv", "row": range(2, len(texts) + 2)})


@pytest.fixture
def cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(text_quality, "MAX_WARNINGS_PER_KIND", 5)
    return 5


def test_grouped_count_is_exact_past_the_example_cap(cap: int):
    damaged = [f"profit rose \ufffd {i}" for i in range(23)]
    warnings = text_warnings(frame([*damaged, "a clean sentence", "caf\u00c3\u00a9 au lait"]), fixed=False)
    replacement = [w for w in warnings if w.rule == "text_replacement_char"]
    assert len(replacement) == cap  # examples capped
    assert count_by_rule(warnings)["text_replacement_char"] == 23  # count exact
    group = next(g for g in group_failures(warnings) if g.rule == "text_replacement_char")
    assert group.count == 23 and group.to_dict()["count"] == 23
    assert group.line().startswith("23 texts with U+FFFD replacement characters")
    assert "tweets.csv row 2, row 3, row 4 and 20 more" in group.line()
    assert count_by_rule(warnings).get("text_mojibake") == 1


def test_under_the_cap_nothing_is_folded(cap: int):
    warnings = text_warnings(frame([f"bad \ufffd {i}" for i in range(cap)]), fixed=False)
    assert [w.more for w in warnings] == [0] * cap
    assert group_failures(warnings)[0].count == cap


def test_error_total_counts_folded_places(cap: int):
    warnings = text_warnings(frame([f"bad \ufffd {i}" for i in range(12)]), fixed=False)
    assert str(DataValidationError(warnings, "report.json")).startswith("data validation failed: 12 problem(s)")


def test_control_characters_are_unicode_cc_but_tab_and_newlines() -> None:
    """The control-character pattern matches exactly Unicode's Cc category less tab, LF and CR, and ASCII texts
    (checked for controls only) are flagged as the full check flags them."""
    import unicodedata

    for code in range(0x110000):
        ch = chr(code)
        expected = unicodedata.category(ch) == "Cc" and ch not in text_quality.KEEP_CONTROLS
        assert bool(text_quality.CONTROL_CHARS.fullmatch(ch)) == expected, hex(code)
    assert text_quality.problems("Sales rose 5 %.\tSee note\r\n") == []
    assert text_quality.problems("Sales\x00 rose\x7f") == ["text_control_chars"]
    assert text_quality.problems("It\x85s") == ["text_mojibake", "text_control_chars"]  # cp1252's … read as C1
    assert text_quality.problems("The company\u2019s profit") == []
    assert text_quality.problems("The companyâ€™s profit") == ["text_mojibake"]
    assert text_quality.problems("lost \ufffd byte") == ["text_replacement_char"]
