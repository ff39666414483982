"""Reading inputs for `tunepipe score` without a model: expansion of files, folders and globs; the text column;
strict encodings; fixed-size chunks whatever the format; and the bad-row reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.scoring import chunks, inputs


def _csv(path: Path, rows: int, text: str = "headline") -> Path:
    frame = pd.DataFrame({"id": range(rows), text: [f"Sales rose {i} %,\nthen fell." for i in range(rows)]})
    frame.to_csv(path, index=False)
    return path


def test_expand_files_folders_and_globs(tmp_path: Path):
    (tmp_path / "a").mkdir()
    one = _csv(tmp_path / "a" / "one.csv", 3)
    two = _csv(tmp_path / "a" / "two.csv", 3)
    (tmp_path / "a" / "notes.md").write_text("not data")
    assert inputs.expand([str(tmp_path / "a")]) == [one, two]
    assert inputs.expand([str(tmp_path / "a" / "t*.csv"), str(one), str(two)]) == [two, one]
    with pytest.raises(FileNotFoundError, match="no file matches it as a glob"):
        inputs.expand([str(tmp_path / "nothing*.csv")])


def test_text_column_found_or_named(tmp_path: Path):
    spec = inputs.inspect(_csv(tmp_path / "n.csv", 5), None, None, None)
    assert spec.text_column == "headline" and spec.columns == ("id", "headline")
    other = _csv(tmp_path / "o.csv", 5, text="what_was_said")
    assert inputs.inspect(other, None, None, None).text_column == "what_was_said"  # the longest strings
    with pytest.raises(DataFormatError, match=r"field 'body'.*--text-column"):
        inputs.inspect(other, "body", None, None)


def test_non_utf8_needs_encoding(tmp_path: Path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text\nCafé société rose\n".encode("cp1252"))
    with pytest.raises(DataFormatError, match=r"byte 0xE9 .*line 2.*--encoding cp1252"):
        inputs.inspect(path, None, None, None)
    spec = inputs.inspect(path, None, "cp1252", None)
    (chunk,) = chunks.chunks(spec, 10)
    assert chunk.table.column("text").to_pylist() == ["Café société rose"]
    marked = inputs.inspect(path, None, "utf-8", None)
    assert marked.undecodable
    (chunk,) = chunks.chunks(marked, 10)
    assert chunks.bad_rows(marked, chunk.table, 100) == [(0, "undecodable bytes (not valid utf-8)")]


def test_empty_files(tmp_path: Path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataFormatError, match="file is empty"):
        inputs.inspect(tmp_path / "empty.csv", None, None, None)
    (tmp_path / "header.csv").write_text("id,text\n")
    with pytest.raises(DataFormatError, match="no data rows"):
        inputs.inspect(tmp_path / "header.csv", None, None, None)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_chunks_are_exact_in_every_format(tmp_path: Path, suffix: str):
    frame = pd.DataFrame({"n": range(23), "text": [f"line {i}\nwith a second line, and a comma" for i in range(23)]})
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    spec = inputs.inspect(path, None, None, None)
    found = list(chunks.chunks(spec, 5))
    assert [c.table.num_rows for c in found] == [5, 5, 5, 5, 3]
    assert [c.first_row for c in found] == [1, 6, 11, 16, 21]
    texts = [t for c in found for t in c.table.column("text").to_pylist()]
    assert texts == frame["text"].tolist()


def test_bad_row_reasons(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    rows = [{"text": "fine"}, {"text": ""}, {"text": 7}, {"other": 1}, {"text": "x" * 50}, {"text": "   "}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = inputs.inspect(path, "text", None, None)
    (chunk,) = chunks.chunks(spec, 100)
    reasons = dict(chunks.bad_rows(spec, chunk.table, 20))
    assert set(reasons) == {1, 2, 3, 4, 5}
    assert reasons[1] == reasons[5] == "empty text"
    assert reasons[2] == "not text (int 7)" and "null" in reasons[3] and "over score.max_chars (20)" in reasons[4]
    table = pa.table({"text": pa.array([1, 2])})
    assert chunks.bad_rows(spec, table, 20)[0][1].startswith("not text (int")
