"""The bad-input corpus (tests/data/bad): every file fails through `tunepipe run` with a message naming the file,
the row and the rule, the GX report is saved, and neither the registry nor the DVC-tracked data changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import file_md5
from pipeline_lib.registry import store

pytestmark = pytest.mark.integration
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
NER_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "conll2003.yaml")
# the case's one file, read by its suffix (CoNLL or JSONL), split stratified: a handful of sentences would often leave
# one of the hash split's bands empty, a second problem in files that each hold one
NER_SETS = ("data.files={}", "data.format=auto", "data.split.method=stratified")


class Case(NamedTuple):
    """What a bad file must fail with: the rule, the row (None for whole-file problems), a detail of the
    message (token, tag, count), and extra overrides the case needs."""

    rule: str
    row: int | None
    says: str = ""
    sets: tuple[str, ...] = ()


# classification files (tests/data/bad/*), run with the default config and the labels configs/default.yaml declares
LABELS = "data.labels=[negative, neutral, positive]"
CASES = {
    "latin1_encoding.csv": Case("data_format", 4),
    "utf16_encoding.csv": Case("data_format", 1),
    "bom_with_unknown_label.csv": Case("label_in_set", 3),
    "crlf_with_stray_cr.csv": Case("data_format", 5),
    "empty_text.csv": Case("text_length", 4),
    "whitespace_only_text.csv": Case("text_length", 6),
    "unknown_label.csv": Case("label_in_set", 5),
    "missing_label_value.csv": Case("label_not_null", 5),
    "missing_label_column.csv": Case("data_format", None),
    "header_only.csv": Case("data_format", None),
    "empty_file.csv": Case("data_format", None),
    "duplicate_rows.csv": Case("text_unique_in_split", 4),
    "conflicting_labels.csv": Case("conflicting_labels", 8),
    "same_text_in_train_and_test.csv": Case("text_in_two_splits", 8),
    "text_50000_chars.csv": Case("text_length", 7),
    "nul_byte.csv": Case("data_format", 4),
    "empty_split.csv": Case("split_not_empty", None),
    "bad_split_name.csv": Case("data_format", 4),
    "invalid_json_line.jsonl": Case("data_format", 4),
    "phrasebank_missing_separator.txt": Case("data_format", 4),
}

# NER files (tests/data/bad/ner/*), run with configs/conll2003.yaml (IOB1, data.max_tokens 256)
NER_CASES = {
    "iob2_i_per_after_b_loc.conll": Case(
        "tag_iob2", 59, "token 8 'that': tag 'I-PER' follows 'B-LOC'", ("data.tag_scheme=iob2",)
    ),
    "unknown_tag.conll": Case("tag_in_set", 31, "token 11 'bid': tag 'B-FOO' is not one of O, B-PER"),
    "malformed_tag.conll": Case("tag_in_set", 87, "token 1 'Mei': tag 'X-PER' is not one of O, B-PER"),
    "missing_tag_column.conll": Case("data_format", 49, "one column only ('said')"),
    "nul_byte.conll": Case("data_format", 77, "contains a NUL byte"),
    "latin1_encoding.conll": Case("data_format", 102, "byte 0xFC at byte offset 1627 is not valid utf-8"),
    "sentence_300_tokens.conll": Case("sentence_length", 73, "sentence has 300 tokens; expected at most 256"),
    "docstart_only.conll": Case("data_format", None, "file holds no sentences"),
    "tokens_tags_length.jsonl": Case("tokens_tags_length", 4, "13 tokens but 12 tags (token 13 '.' has no tag)"),
    "empty_sentence.jsonl": Case("sentence_not_empty", 6, "sentence has no tokens"),
    "empty_test_split.jsonl": Case("split_not_empty", None, "test: no sentences; expected at least one"),
    "same_sentence_in_train_and_test.jsonl": Case(
        "text_in_two_splits", 11, '"Lena Kovac of Fiat said in Lisbon', ("data.cross_split_duplicates=fail",)
    ),
}
ALL = {**CASES, **{f"ner/{name}": case for name, case in NER_CASES.items()}}


def test_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir() if p.is_file()) == sorted(CASES)
    assert sorted(p.name for p in BAD.iterdir() if p.is_dir()) == ["ner"]
    assert sorted(p.name for p in (BAD / "ner").iterdir()) == sorted(NER_CASES)
    assert len(CASES) >= 20 and len(NER_CASES) >= 6


@pytest.fixture(scope="module")
def dvc_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository whose tracked data holds the bad files."""
    root = tmp_path_factory.mktemp("bad-inputs")
    shutil.copytree(BAD, root / "data")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "data"]):
        subprocess.run(args, cwd=root, check=True, capture_output=True)
    return root


def snapshot(root: Path) -> dict:
    cfg = load_config(None, [f"paths.store={root / '.tunepipe'}"])
    client = store.connect(cfg)
    models = {
        m.name: sorted((str(v.version), tuple(v.aliases)) for v in client.search_model_versions(f"name='{m.name}'"))
        for m in client.search_registered_models()
    }
    data = {str(p.relative_to(root)): file_md5(p) for p in sorted((root / "data").rglob("*")) if p.is_file()}
    status = subprocess.run(["dvc", "status", "-q"], cwd=root, capture_output=True).returncode
    return {"models": models, "data": data, "dvc_clean": status == 0}


def cli_args(name: str) -> list[str]:
    """`tunepipe run` arguments for one bad file: NER files with the CoNLL-2003 config."""
    case = ALL[name]
    ner = name.startswith("ner/")
    config, sets = (["--config", NER_CONFIG], [*NER_SETS, *case.sets]) if ner else ([], [LABELS, *case.sets])
    return [*config, *(arg for item in (f"data.path=data/{name}", *sets) for arg in ("--set", item))]


@pytest.mark.parametrize("name", sorted(ALL))
def test_bad_input_fails_cleanly(name: str, dvc_workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(dvc_workspace)
    rule, row, says, _ = ALL[name]
    before = snapshot(dvc_workspace)
    result = CliRunner().invoke(app, ["run", *cli_args(name), "--set", f"paths.store={dvc_workspace / '.tunepipe'}"])

    assert result.exit_code == 1, result.output
    where = f"data/{name} row {row}" if row else f"data/{name}"
    assert re.search(rf"{re.escape(where)}\b", result.output), result.output  # row 4 is not row 49
    assert rule in result.output and says in result.output, result.output
    reports = (dvc_workspace / "artifacts" / "runs").glob("*/validation/report.json")
    report_path = max(reports, key=lambda p: p.stat().st_mtime_ns)
    report = json.loads(report_path.read_text())
    rules = {f["rule"] for f in report["failures"]}
    assert report["passed"] is False and rule in rules, report["failures"]
    assert rules == {rule} or not name.startswith("ner/"), "each NER file holds exactly one problem"
    assert report_path.with_name("gx_result.json").is_file()
    assert not list(report_path.parents[1].glob("data/*.parquet")), "no split files after a failed validation"
    assert snapshot(dvc_workspace) == before
