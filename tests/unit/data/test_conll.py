"""CoNLL / JSONL readers for tagged sentences: sentence breaks, -DOCSTART-, IOB1 → IOB2, line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_lib.config import DataConfig
from pipeline_lib.data.conll import iob1_to_iob2, iob2_errors, read_tagged
from pipeline_lib.data.failures import DataValidationError
from pipeline_lib.data.readers import DataFormatError

CONLL = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER


-DOCSTART- -X- -X- O
BRUSSELS NNP I-NP I-LOC
"""


def test_iob1_to_iob2():
    assert iob1_to_iob2(["I-ORG", "I-ORG", "O", "I-PER", "B-PER", "I-PER", "I-LOC", "I-PER"]) == [
        "B-ORG",
        "I-ORG",
        "O",
        "B-PER",
        "B-PER",
        "I-PER",
        "B-LOC",
        "B-PER",
    ]
    already = ["B-ORG", "I-ORG", "O", "B-PER", "B-PER"]
    assert iob1_to_iob2(already) == already  # IOB2 input is a fixed point


def test_iob2_errors_points_at_each_bad_i_tag():
    assert iob2_errors(["O", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-MISC", "I-MISC"]) == [1, 4]
    assert iob2_errors(["I-PER"]) == [0]
    assert iob2_errors(["B-PER", "I-PER", "O"]) == []


def test_conll_reader_sentences_lines_and_conversion(tmp_path: Path):
    path = tmp_path / "eng.x"
    path.write_text(CONLL.replace("\n", "\r\n"))
    frame = read_tagged(path, DataConfig(tag_scheme="iob1"))
    assert frame["tokens"].tolist() == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn", "Smith"],
        ["BRUSSELS"],
    ]
    assert frame["tags"].tolist() == [
        ["B-ORG", "O", "B-MISC", "O", "O"],
        ["B-PER", "I-PER", "B-PER"],
        ["B-LOC"],
    ]
    assert frame["row"].tolist() == [3, 9, 15]  # first line of each sentence, as `grep -n` counts
    assert frame["text"].iloc[0] == "EU rejects German call ."
    assert set(frame["source"]) == {str(path)} and frame["split"].isna().all()


def test_iob2_input_is_kept_as_is(tmp_path: Path):
    path = tmp_path / "x.conll"
    path.write_text("EU I-ORG\nrejects O\n")
    assert read_tagged(path, DataConfig(tag_scheme="iob2"))["tags"].tolist() == [["I-ORG", "O"]]


def test_jsonl_reader(tmp_path: Path):
    path = tmp_path / "x.jsonl"
    rows = [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "split": "train"}, {"tokens": [], "tags": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    frame = read_tagged(path, DataConfig())
    assert frame["tokens"].tolist() == [["EU", "rejects"], []] and frame["row"].tolist() == [1, 2]
    assert frame["split"].tolist() == ["train", None]


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("one.conll", "EU B-ORG\nrejects\n", "one.conll, row 2: one column only ('rejects')"),
        ("bad.jsonl", '{"tokens": ["a"], "tags": "O"}\n', "bad.jsonl, row 1, field 'tags': found str O"),
        ("nojson.jsonl", "[1]\n", "nojson.jsonl, row 1: found a JSON list"),
        ("empty.conll", "-DOCSTART- -X- O\n\n", "file holds no sentences"),
        ("nul.conll", "EU B-ORG\nre\x00jects O\n", "nul.conll, row 2: contains a NUL byte"),
        ("nul.jsonl", '{"tokens": ["a\\u0000b"], "tags": ["O"]}\n', "nul.jsonl, row 1, field 'tokens': contains a NUL"),
    ],
)
def test_format_errors_name_file_and_line(tmp_path: Path, name: str, content: str, needle: str):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFormatError, match="expected") as info:
        read_tagged(path, DataConfig())
    assert needle in str(info.value)


def test_real_conll2003_train_reads(shared_data: Path):
    frame = read_tagged(shared_data / "conll2003" / "eng.train", DataConfig(tag_scheme="iob1"))
    assert len(frame) == 14041
    assert frame["tokens"].iloc[0] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert frame["tags"].iloc[0][:3] == ["B-ORG", "O", "B-MISC"] and frame["row"].iloc[0] == 3
    assert all(not iob2_errors(tags) for tags in frame["tags"])


# --- validation of tagged sentences (real Great Expectations) ------------------------------------------

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
GOOD = {
    "train": "EU I-ORG\nrejects O\nGerman I-MISC\ncall O\n\nPeter I-PER\nBlackburn I-PER\n\nin O\nBRUSSELS I-LOC\n",
    "validation": "Japan I-LOC\nwins O\n\nAl I-PER\n",
    "test": "Nadim I-PER\nLadki I-PER\n\nAL-AIN I-LOC\n,\tO\nUnited I-LOC\nArab I-LOC\n",
}


def _tagged(tmp_path: Path, files: dict[str, str], suffix: str = ".conll", **data: object):
    from pipeline_lib.config import PipelineConfig
    from pipeline_lib.layout import RunDir
    from pipeline_lib.steps.validate import validate

    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for split, content in files.items():
        (folder / f"{split}{suffix}").write_text(content)
    cfg = PipelineConfig.model_validate(
        {
            "task": "token_classification",
            "data": {
                "path": str(folder),
                "files": {split: f"{split}{suffix}" for split in files},
                "labels": LABELS,
                "tag_scheme": "iob1",
                **data,
            },
        }
    )
    return validate(cfg, RunDir(tmp_path / "run"))


def _each(error: DataValidationError) -> str:
    """Every failure on a line of its own, as the report lists them (the message groups them by cause)."""
    return "\n".join(str(failure) for failure in error.failures)


def _tagged_failure(tmp_path: Path, files: dict[str, str], suffix: str = ".conll", **data: object):
    from pipeline_lib.data.failures import DataValidationError

    with pytest.raises(DataValidationError) as info:
        _tagged(tmp_path, files, suffix, **data)
    return info.value


def test_good_conll_splits_validate_and_write_tokens_and_tags(tmp_path: Path):
    import pandas as pd

    result = _tagged(tmp_path, GOOD)
    assert result.passed and result.rows == {"train": 3, "validation": 2, "test": 2}
    assert result.label_counts["train"] == {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 1, "<sentences>": 3, "<tokens>": 8}
    test = pd.read_parquet(tmp_path / "run" / "data" / "test.parquet")
    assert list(test.columns) == ["tokens", "tags", "text", "source", "row"]
    assert list(test["tags"].iloc[1]) == ["B-LOC", "O", "B-LOC", "I-LOC"] and list(test["row"]) == [1, 4]


def test_unknown_tag_names_file_sentence_and_token(tmp_path: Path):
    files = {**GOOD, "train": GOOD["train"].replace("Blackburn I-PER", "Blackburn I-PERSON")}
    error = _tagged_failure(tmp_path, files)
    expected = (
        f"{tmp_path / 'data' / 'train.conll'} row 6 (train): tag_in_set — sentence at line 6, token 2 "
        "'Blackburn': tag 'B-PERSON' is not one of O, B-PER"
    )
    assert expected in _each(error)


def test_iob1_tag_is_quoted_as_written_and_a_malformed_tag_breaks_nothing_after_it(tmp_path: Path):
    files = {
        **GOOD,
        "train": GOOD["train"].replace("Peter I-PER", "Peter X-PER"),  # Blackburn's I-PER now starts the entity
        "validation": GOOD["validation"].replace("Japan I-LOC", "Japan I-FOO"),
    }
    error = _tagged_failure(tmp_path, files)
    assert [(f.rule, f.split) for f in error.failures] == [("tag_in_set", "train"), ("tag_in_set", "validation")]
    assert "token 1 'Peter': tag 'X-PER' is not one of" in error.failures[0].message
    assert error.failures[1].message.endswith("(data.labels); the file has 'I-FOO', read as IOB1 (data.tag_scheme)")


def test_i_after_o_is_left_as_is_in_iob2_input_and_fails(tmp_path: Path):
    iob2 = {
        "train": "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n\nin O\nBRUSSELS I-LOC\nand O\nBonn B-LOC\n",
        "validation": "Japan B-LOC\n",
        "test": "Ladki B-PER\n",
    }
    error = _tagged_failure(tmp_path, iob2, tag_scheme="iob2")
    assert [f.rule for f in error.failures] == ["tag_iob2"]
    assert str(error.failures[0]) == (
        f"{tmp_path / 'data' / 'train.conll'} row 7 (train): tag_iob2 — sentence at line 7, token 2 'BRUSSELS': "
        "tag 'I-LOC' follows 'O'; in IOB2 an entity starts with 'B-LOC' (data.tag_scheme is iob2; set iob1 for "
        "IOB1 files such as CoNLL-2003)"
    )
    assert not (tmp_path / "run" / "data" / "train.parquet").exists()
    # the same file read as IOB1 is converted (I-LOC after O starts an entity) and passes
    assert _tagged(tmp_path, iob2, tag_scheme="iob1").passed


def test_length_mismatch_empty_sentence_and_blank_token_in_jsonl(tmp_path: Path):
    def jsonl(rows: list[tuple[list[str], list[str]]]) -> str:
        return "".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in rows)

    files = {
        "train": jsonl(
            [
                (["EU", "rejects", "lamb"], ["B-ORG", "O"]),
                ([], []),
                (["Peter", " "], ["B-PER", "O"]),
                (["in", "Bonn"], ["O", "B-LOC"]),
                (["German"], ["B-MISC"]),
            ]
        ),
        "validation": jsonl([(["Japan"], ["B-LOC"])]),
        "test": jsonl([(["Ladki"], ["B-PER"])]),
    }
    error = _tagged_failure(tmp_path, files, suffix=".jsonl", tag_scheme="iob2")
    message = _each(error)
    train = tmp_path / "data" / "train.jsonl"
    assert (
        f"{train} row 1 (train): tokens_tags_length — sentence at line 1: 3 tokens but 2 tags (token 3 'lamb' has "
        "no tag)"
    ) in message
    assert f"{train} row 2 (train): sentence_not_empty" in message
    assert f"{train} row 3 (train): token_not_blank — sentence at line 3, token 2 ''" in message


def test_sentence_length_bound_and_cross_split_duplicates(tmp_path: Path):
    error = _tagged_failure(tmp_path, GOOD, max_tokens=3)
    assert (
        "train.conll row 1 (train): sentence_length — sentence at line 1: sentence has 4 tokens; expected at most 3"
        in _each(error)
    )
    files = {**GOOD, "test": GOOD["test"] + "\nPeter I-PER\nBlackburn I-PER\n"}
    error = _tagged_failure(tmp_path, files)
    assert [f.rule for f in error.failures] == ["text_in_two_splits"]
    assert 'test.conll row 9 (test): text_in_two_splits — "Peter Blackburn" also in train' in _each(error)
    result = _tagged(tmp_path, files, cross_split_duplicates="warn")
    report = json.loads((tmp_path / "run" / "validation" / "report.json").read_text())
    assert result.passed and [w["rule"] for w in report["warnings"]] == ["text_in_two_splits"]


def test_entity_type_missing_from_train(tmp_path: Path):
    files = {**GOOD, "train": GOOD["train"].replace("German I-MISC", "German O")}
    error = _tagged_failure(tmp_path, files)
    assert [f.rule for f in error.failures] == ["label_in_train"] and "no MISC entity" in _each(error)
