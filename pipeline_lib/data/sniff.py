"""What a file holds, found by looking at it: its text encoding, its format, its CSV delimiter and which column holds
the text. Shared by `tunepipe init` (which proposes a config) and `tunepipe score` (which reads files it has never
seen); moved here from `commands/init.py` so that both layers can use it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pipeline_lib.data.readers import SUFFIX_FORMATS

TEXT_NAMES = ("text", "sentence", "tweet", "content", "body", "review", "headline", "title", "message")
TAGGED_SUFFIXES = (".conll", ".bio", ".iob", ".iob2", ".ner")


class SniffError(ValueError):
    """A file cannot be inspected; the message says what was found and what would be needed."""


def detect_encoding(file: Path) -> str:
    """UTF-8 when the bytes decode as UTF-8 (BOM or not), else charset-normalizer's best guess."""
    data = file.read_bytes()[:1_000_000]
    for encoding in ("utf-8", "cp1252"):  # UTF-8, else Windows-1252 (a superset of Latin-1), the usual two
        try:
            data.decode(encoding)
            return encoding
        except UnicodeDecodeError:
            continue
    else:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise SniffError(f"{file}: cannot tell the text encoding; re-save it as UTF-8") from None
        return best.encoding


def read_head(file: Path, encoding: str, chars: int = 200_000) -> str:
    """The first `chars` characters of a text file (undecodable bytes replaced)."""
    return file.read_bytes()[: chars * 2].decode(encoding, errors="replace")[:chars]


def looks_tagged(text: str) -> bool:
    """One token and its tag per line, sentences separated by blank lines (CoNLL-style columns)."""
    lines = [line for line in text.splitlines()[:2000] if line.strip() and not line.startswith("-DOCSTART-")]
    if not lines or "\n\n" not in text.replace("\r\n", "\n"):
        return False
    fields = [line.split() for line in lines]
    tag_like = sum(1 for f in fields if len(f) >= 2 and re.fullmatch(r"O|[BIES]-\S+", f[-1]))
    return tag_like / len(fields) > 0.8


def detect_format(file: Path, encoding: str) -> str:
    """csv, jsonl, jsonl-tagged, parquet, phrasebank or conll, from the suffix and the first lines."""
    suffix = file.suffix.lower()
    head = read_head(file, encoding)
    known = suffix in SUFFIX_FORMATS or suffix in TAGGED_SUFFIXES
    if suffix in TAGGED_SUFFIXES or ((suffix in (".tsv", ".txt") or not known) and looks_tagged(head)):
        return "conll"
    if suffix in (".jsonl", ".json"):
        first = next((line for line in head.splitlines() if line.strip()), "{}")
        return "jsonl-tagged" if {"tokens", "tags"} <= set(json.loads(first)) else "jsonl"
    if suffix == ".txt":
        lines = [line for line in head.splitlines()[:200] if line.strip()]
        if lines and sum("@" in line for line in lines) / len(lines) > 0.9:
            return "phrasebank"
        raise SniffError(f"{file}: a .txt file that is neither `sentence@label` lines nor token/tag columns")
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    raise SniffError(f"{file}: unknown format; expected one of {', '.join([*SUFFIX_FORMATS, *TAGGED_SUFFIXES])}")


def sniff_delimiter(file: Path, head: str) -> str:
    """The CSV field separator of a file's first characters: one of , TAB ; | (else TAB for .tsv, a comma)."""
    try:
        return csv.Sniffer().sniff(head[:20_000], delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if file.suffix.lower() == ".tsv" else ","


def text_column(columns: list[str], rows: list[dict[str, Any]]) -> str | None:
    """The column holding the text: the first named like one (`text`, `sentence`, `tweet`, ...), else the column of
    strings with the longest values; None when no column holds strings."""
    named = [c for c in columns if str(c).strip().lower() in TEXT_NAMES]
    if named:
        return named[0]
    lengths = {}
    for column in columns:
        values = [r.get(column) for r in rows]
        strings = [v for v in values if isinstance(v, str) and v.strip()]
        if strings and len(strings) >= len([v for v in values if v is not None]) / 2:
            lengths[column] = sum(map(len, strings)) / len(strings)
    return max(lengths, key=lengths.__getitem__) if lengths else None
