"""Text that was damaged before it reached us: mojibake (UTF-8 read as Latin-1 or cp1252, `â€™` for `’`), control
characters, and U+FFFD replacement characters (bytes already lost). Found with ftfy and reported as warnings;
`data.fix_text: true` repairs what can be repaired before keys, splits and training see the text."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

import pandas as pd

from pipeline_lib.data.failures import ValidationFailure, snippet

KEEP_CONTROLS = {"\t", "\n", "\r"}
# Unicode's control characters (category Cc: C0, DEL and C1) but tab and newlines
CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_WARNINGS_PER_KIND = 1000  # a warning per damaged row up to this many; the rest is counted in the last one


@cache
def _fixer_config() -> Any:
    """ftfy's repairs that undo damage, none that restyle clean text (quotes, ligatures, widths stay)."""
    from ftfy import TextFixerConfig

    return TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)


def repair(text: str) -> str:
    """`text` with its mojibake undone and its control characters (but tab and newlines) removed."""
    from ftfy import fix_text

    fixed = fix_text(text, config=_fixer_config())
    return "".join(ch for ch in fixed if ch in KEEP_CONTROLS or unicodedata.category(ch) != "Cc")


def problems(text: str) -> list[str]:
    """The kinds of damage in `text`: `text_mojibake`, `text_control_chars`, `text_replacement_char`. ASCII text
    (most rows of most datasets) can hold neither mojibake nor U+FFFD: only its control characters are looked for."""
    found = []
    if text.isascii():
        return ["text_control_chars"] if CONTROL_CHARS.search(text) else found
    from ftfy.badness import is_bad

    if "\ufffd" in text:
        found.append("text_replacement_char")
    elif is_bad(text) and repair(text) != text:
        found.append("text_mojibake")
    if CONTROL_CHARS.search(text):
        found.append("text_control_chars")
    return found


def text_warnings(df: pd.DataFrame, fixed: bool) -> list[ValidationFailure]:
    """One warning per damaged row and kind (what is left after `data.fix_text` when `fixed`), up to
    `MAX_WARNINGS_PER_KIND` per kind; the rows past it are counted in that kind's last warning (`more`), so the
    grouped count stays exact."""
    warnings: list[ValidationFailure] = []
    last: dict[str, ValidationFailure] = {}
    counts: dict[str, int] = {}
    for row in df[df["text"].notna()].to_dict("records"):
        for kind in problems(str(row["text"])):
            counts[kind] = counts.get(kind, 0) + 1
            if counts[kind] > MAX_WARNINGS_PER_KIND:
                last[kind].more += 1
                continue
            message = snippet(row["text"])
            if kind == "text_mojibake":
                message += f" reads {snippet(repair(str(row['text'])))} when repaired"
            last[kind] = ValidationFailure(row["source"], int(row["row"]), None, kind, message)
            warnings.append(last[kind])
    return warnings


def fix_texts(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`df` with each text (and NER token) repaired; the number of rows that changed."""
    if "tokens" in df.columns:
        tokens = df["tokens"].map(lambda words: [repair(w) for w in words])
        fixed = df.assign(tokens=tokens, text=tokens.map(" ".join))
    else:
        fixed = df.assign(text=df["text"].map(repair, na_action="ignore"))
    changed = int((fixed["text"].fillna("") != df["text"].fillna("")).sum())
    return fixed, changed
