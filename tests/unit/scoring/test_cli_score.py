"""`tunepipe score`'s argument checks, before any model or file is looked at."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_bad_arguments_are_one_clear_error(tmp_path: Path):
    base = ["score", "--model", "financial-sentiment@champion", "--output", str(tmp_path / "out")]
    cases = {
        "give at least one INPUT": [],
        "--every: '10x' is not a duration": ["--watch", str(tmp_path), "--every", "10x"],
        "--on-bad-row drop: expected one of fail, skip": ["x.csv", "--on-bad-row", "drop"],
        "--engine dask: expected one of local, spark": ["x.csv", "--engine", "dask"],
        "give no INPUT with it": ["x.csv", "--watch", str(tmp_path)],
    }
    for message, args in cases.items():
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    assert not (tmp_path / "out").exists()
