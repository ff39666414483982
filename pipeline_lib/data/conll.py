"""Read tagged sentences for token classification: CoNLL column files and JSON Lines.

CoNLL: one token per line, whitespace-separated columns with the tag last, `-DOCSTART-` lines and blank
lines end a sentence. JSON Lines: `{"tokens": [...], "tags": [...]}` (optional `"split"`) per line.
Tags in IOB1 (CoNLL-2003's own scheme) are converted to IOB2; IOB2 input is kept as it is, so an `I-`
that does not continue an entity is reported by validation instead of being silently repaired.
Every sentence keeps `source` and `row` (its first line) so that errors point at file, sentence and token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig
from pipeline_lib.data.readers import DataFormatError, decode_text, jsonl_objects

COLUMNS = ("tokens", "tags", "file_tags", "text", "split", "source", "row")
DOCSTART = "-DOCSTART-"
JSONL_SUFFIXES = (".jsonl", ".json")


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 → IOB2: an `I-X` that does not continue an `X` entity (a `B-X` or `I-X`) starts one: `B-X`."""
    out = []
    previous = "O"
    for tag in tags:
        starts = tag.startswith("I-") and (previous[:2] not in ("B-", "I-") or previous[2:] != tag[2:])
        out.append("B-" + tag[2:] if starts else tag)
        previous = tag
    return out


def iob2_errors(tags: list[str]) -> list[int]:
    """Positions of `I-X` tags that follow neither `B-X` nor `I-X` (invalid in IOB2)."""
    bad = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-"):
            previous = tags[i - 1] if i else "O"
            if previous[:2] not in ("B-", "I-") or previous[2:] != tag[2:]:
                bad.append(i)
    return bad


def entity_types(labels: Sequence[str]) -> list[str]:
    """The entity types of an IOB2 tag set, in first-seen order (`B-PER`, `I-PER` → `PER`)."""
    return list(dict.fromkeys(label[2:] for label in labels if label[:2] in ("B-", "I-")))


def read_tagged(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """Read one CoNLL or JSONL file into tokens/tags/text/split/source/row (one row per sentence).

    `text` is the tokens joined by single spaces (the key for duplicate checks). Tags are converted to
    IOB2 when `cfg.tag_scheme` is `iob1`; `file_tags` keeps them as written, for messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    fmt = cfg.format if cfg.format in ("conll", "jsonl") else None
    if fmt is None:
        fmt = "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "conll"
    records = list(_read_jsonl(path, cfg.encoding) if fmt == "jsonl" else _read_conll(path, cfg.encoding))
    if not records:
        raise DataFormatError(path, "file holds no sentences", expected="at least one tagged sentence")
    convert = iob1_to_iob2 if cfg.tag_scheme == "iob1" else list
    return pd.DataFrame(
        {
            "tokens": [r["tokens"] for r in records],
            "tags": [convert(r["tags"]) for r in records],
            "file_tags": [r["tags"] for r in records],
            "text": [" ".join(r["tokens"]) for r in records],
            "split": pd.Series([r.get("split") for r in records], dtype=object),
            "source": str(path),
            "row": pd.Series([r["row"] for r in records], dtype="int64"),
        }
    )


def _read_conll(file: Path, encoding: str | None = None) -> Iterable[dict[str, Any]]:
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    for number, raw in enumerate(decode_text(file, encoding or "utf-8").split("\n"), start=1):
        _refuse_nul(file, raw, number)
        fields = raw.split()
        if not fields or fields[0] == DOCSTART:
            if tokens:
                yield {"tokens": tokens, "tags": tags, "row": first}
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DataFormatError(
                file,
                f"one column only ({raw.strip()!r})",
                row=number,
                expected="a token and its tag separated by whitespace (the tag in the last column)",
            )
        if not tokens:
            first = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        yield {"tokens": tokens, "tags": tags, "row": first}


def _read_jsonl(file: Path, encoding: str | None = None) -> Iterable[dict[str, Any]]:
    for number, obj in jsonl_objects(file, encoding):
        record: dict[str, Any] = {"row": number, "split": obj.get("split")}
        for key in ("tokens", "tags"):
            value = obj.get(key)
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                found = "missing" if value is None else f"found {type(value).__name__} {str(value)[:60]}"
                raise DataFormatError(file, found, row=number, field=key, expected="a list of strings")
            _refuse_nul(file, "".join(value), number, key)
            record[key] = [item.strip() for item in value]
        yield record


def _refuse_nul(file: Path, text: str, row: int, field: str | None = None) -> None:
    """A NUL byte is not whitespace to str.split(): it would hide inside a token, so the line is refused."""
    if "\x00" in text:
        raise DataFormatError(file, "contains a NUL byte", row=row, field=field, expected="text without NUL bytes")
