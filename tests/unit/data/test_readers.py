"""Readers: every format, the awkward encodings and line endings, and errors that point at file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.config import DataConfig
from pipeline_lib.data.readers import DataFormatError, read_labelled_text

FPB = Path(__file__).parents[3].parent / "shared" / "data" / "financial_phrasebank"


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _read(path: Path, **fields: object) -> pd.DataFrame:
    return read_labelled_text(path, DataConfig(**fields))


def test_csv_keeps_line_numbers_text_and_missing_labels(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "x.csv",
        'text,label\n  Sales rose.  ,positive\n"Two\nlines, quoted",neutral\n\n,negative\nNo label here,\n',
    )
    df = _read(path)
    assert list(df.columns) == ["text", "label", "split", "source", "row"]
    assert df["text"].tolist() == ["Sales rose.", "Two\nlines, quoted", "", "No label here"]
    assert df["row"].tolist() == [2, 3, 6, 7]
    assert df["label"].iloc[2] == "negative" and pd.isna(df["label"].iloc[3])
    assert set(df["source"]) == {str(path)} and df["split"].isna().all()


def test_csv_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path / "bom.csv", "\ufefftext,label\r\nCafé sales rose,positive\r\n")
    df = _read(path)
    assert df.loc[0, "text"] == "Café sales rose" and df.loc[0, "row"] == 2


def test_csv_configured_columns_and_split_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "id,sentence,y,part\n1,Up.,positive,train\n2,Down.,negative,\n")
    df = _read(path, text_column="sentence", label_column="y", split_column="part")
    assert df["text"].tolist() == ["Up.", "Down."]
    assert df["label"].tolist() == ["positive", "negative"]
    assert df["split"].tolist() == ["train", None]


def test_csv_wrong_field_count_names_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "text,label\nfine,neutral\nSales rose, sharply,positive\n")
    with pytest.raises(DataFormatError, match=r"x\.csv, row 3: found 3 fields; expected 2 fields"):
        _read(path)


def test_jsonl(tmp_path: Path) -> None:
    lines = [{"text": " Up. ", "label": "positive", "split": "test"}, {"text": "Flat.", "label": None}]
    path = _write(tmp_path / "x.jsonl", "\ufeff" + json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n")
    df = _read(path)
    assert df["text"].tolist() == ["Up.", "Flat."]
    assert df["row"].tolist() == [1, 3]
    assert df["split"].tolist() == ["test", None] and pd.isna(df["label"].iloc[1])


def test_jsonl_bad_line_names_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", '{"text": "a", "label": "neutral"}\n{"text": "b", label}\n')
    with pytest.raises(DataFormatError, match=r"x\.jsonl, row 2: not valid JSON"):
        _read(path)
    _write(path, '{"text": ["a"], "label": "neutral"}\n')
    with pytest.raises(DataFormatError, match=r"row 1, field 'text': found list .*expected a string"):
        _read(path)


def test_parquet_rows_are_one_based(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pd.DataFrame({"text": ["Up.", "Down."], "label": ["positive", None]}).to_parquet(path)
    df = _read(path)
    assert df["row"].tolist() == [1, 2] and df["text"].tolist() == ["Up.", "Down."]
    assert pd.isna(df["label"].iloc[1])


def test_phrasebank_latin1_crlf_stray_cr_and_last_at(tmp_path: Path) -> None:
    raw = (
        b"Caf\xe9 sales rose @positive\r\n"  # ISO-8859-1 e-acute, CRLF
        b"\r\n"  # blank line
        b"Mail ir@acme.fi for news@neutral\r\n"  # split on the last '@'
        b"Net\rsales fell@negative\r\r\n"  # stray CRs
    )
    df = _read(_write(tmp_path / "fpb.txt", raw))
    assert df["text"].tolist() == ["Café sales rose", "Mail ir@acme.fi for news", "Net sales fell"]
    assert df["label"].tolist() == ["positive", "neutral", "negative"]
    assert df["row"].tolist() == [1, 3, 4]


def test_phrasebank_line_without_at(tmp_path: Path) -> None:
    path = _write(tmp_path / "fpb.txt", "Up@positive\nno separator here\n")
    with pytest.raises(DataFormatError, match=r"fpb\.txt, row 2: no '@' in the line; expected 'sentence@label'"):
        _read(path)


def test_explicit_format_overrides_suffix(tmp_path: Path) -> None:
    path = _write(tmp_path / "sentences.data", "Up@positive\n")
    assert _read(path, format="phrasebank")["label"].tolist() == ["positive"]
    with pytest.raises(DataFormatError, match=r"unknown suffix '\.data'"):
        _read(path)


def test_not_utf8_names_line_and_byte_offset(tmp_path: Path) -> None:
    path = _write(tmp_path / "latin.csv", b"text,label\nCaf\xe9 sales rose,positive\n")
    with pytest.raises(DataFormatError) as info:
        _read(path)
    message = str(info.value)
    assert "latin.csv, row 2" in message and "byte offset 14" in message and "expected UTF-8" in message


def test_missing_column_names_file_column_and_columns_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "sentence,label\nUp.,positive\n")
    with pytest.raises(DataFormatError) as info:
        _read(path)
    assert info.value.field == "text"
    assert "x.csv, field 'text': missing column (columns found: 'sentence', 'label')" in str(info.value)


@pytest.mark.parametrize(("name", "content"), [("x.csv", "text,label\n"), ("x.csv", ""), ("x.jsonl", "\n\n")])
def test_header_only_or_empty_file(tmp_path: Path, name: str, content: str) -> None:
    with pytest.raises(DataFormatError, match=r"x\.(csv|jsonl): (file holds no data rows|file is empty)"):
        _read(_write(tmp_path / name, content))


def test_nul_byte_names_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "text,label\nfine,neutral\nbro\x00ken,neutral\n")
    with pytest.raises(DataFormatError, match=r"x\.csv, row 3, field 'text': contains a NUL byte"):
        _read(path)


def test_directory_reads_supported_files_sorted(tmp_path: Path) -> None:
    _write(tmp_path / "b.jsonl", '{"text": "B", "label": "neutral"}\n')
    _write(tmp_path / "a.csv", "text,label\nA1,positive\nA2,negative\n")
    _write(tmp_path / "notes.md", "# not data\n")
    _write(tmp_path / ".hidden.csv", "garbage")
    df = _read(tmp_path)
    assert df["text"].tolist() == ["A1", "A2", "B"]
    assert df["source"].tolist() == [str(tmp_path / "a.csv")] * 2 + [str(tmp_path / "b.jsonl")]
    assert df["row"].tolist() == [2, 3, 1]


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        _read(tmp_path / "nope.csv")
    with pytest.raises(DataFormatError, match="no data files in the directory"):
        _read(tmp_path)


@pytest.mark.skipif(not (FPB / "Sentences_50Agree.txt").is_file(), reason="Financial PhraseBank not present")
def test_real_phrasebank_50agree() -> None:
    df = _read(FPB / "Sentences_50Agree.txt")
    assert len(df) == 4846
    assert set(df["label"]) == {"negative", "neutral", "positive"}
    assert df["row"].iloc[-1] == 4846 and (df["text"].str.len() > 0).all()
    assert not df["text"].str.contains("\r").any()
