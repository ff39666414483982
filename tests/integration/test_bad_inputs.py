"""The bad-input corpus (tests/data/bad): every file fails through `tunepipe run` with a message naming the file,
the row and the rule, the GX report is saved, and neither the registry nor the DVC-tracked data changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline_lib import registry
from pipeline_lib.config import load_config
from pipeline_lib.versioning import file_md5

pytestmark = pytest.mark.integration
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"

# file -> (rule, row or None for whole-file problems)
CASES = {
    "latin1_encoding.csv": ("data_format", 4),
    "utf16_encoding.csv": ("data_format", 1),
    "bom_with_unknown_label.csv": ("label_in_set", 3),
    "crlf_with_stray_cr.csv": ("data_format", 5),
    "empty_text.csv": ("text_length", 4),
    "whitespace_only_text.csv": ("text_length", 6),
    "unknown_label.csv": ("label_in_set", 5),
    "missing_label_value.csv": ("label_not_null", 5),
    "missing_label_column.csv": ("data_format", None),
    "header_only.csv": ("data_format", None),
    "empty_file.csv": ("data_format", None),
    "duplicate_rows.csv": ("text_unique_in_split", 4),
    "conflicting_labels.csv": ("conflicting_labels", 8),
    "same_text_in_train_and_test.csv": ("text_in_two_splits", 8),
    "text_50000_chars.csv": ("text_length", 7),
    "nul_byte.csv": ("data_format", 4),
    "empty_split.csv": ("split_not_empty", None),
    "bad_split_name.csv": ("data_format", 4),
    "invalid_json_line.jsonl": ("data_format", 4),
    "phrasebank_missing_separator.txt": ("data_format", 4),
}


def test_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(CASES)
    assert len(CASES) >= 20


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
    client = registry.connect(cfg)
    models = {
        m.name: sorted((str(v.version), tuple(v.aliases)) for v in client.search_model_versions(f"name='{m.name}'"))
        for m in client.search_registered_models()
    }
    data = {p.name: file_md5(p) for p in sorted((root / "data").iterdir()) if p.is_file()}
    status = subprocess.run(["dvc", "status", "-q"], cwd=root, capture_output=True).returncode
    return {"models": models, "data": data, "dvc_clean": status == 0}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_cleanly(name: str, dvc_workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(dvc_workspace)
    rule, row = CASES[name]
    before = snapshot(dvc_workspace)
    sets = ["--set", f"data.path=data/{name}", "--set", f"paths.store={dvc_workspace / '.tunepipe'}"]
    result = CliRunner().invoke(app, ["run", *sets])

    assert result.exit_code == 1, result.output
    where = f"data/{name} row {row}" if row else f"data/{name}"
    assert where in result.output and rule in result.output, result.output
    reports = (dvc_workspace / "artifacts" / "runs").glob("*/validation/report.json")
    report_path = max(reports, key=lambda p: p.stat().st_mtime_ns)
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and any(f["rule"] == rule for f in report["failures"])
    assert report_path.with_name("gx_result.json").is_file()
    assert not list(report_path.parents[1].glob("data/*.parquet")), "no split files after a failed validation"
    assert snapshot(dvc_workspace) == before
