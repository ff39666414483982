"""`tunepipe score`: the command's options, parsed and handed to `pipeline_lib.scoring` (or, with `--watch`, to the
`score` flow served on a schedule). Registered in `flows/cli.py`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

Models = Annotated[
    list[str],
    typer.Option(
        "--model", "-m", help="NAME@ALIAS or NAME/VERSION; repeat for more models (their columns get NAME__ prefixes)."
    ),
]


def score_command(
    model: Models,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder: part-*.parquet + manifest.json.")],
    inputs: Annotated[
        list[str] | None, typer.Argument(help="CSV/TSV/JSONL/Parquet files, folders or globs to score.")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="The column holding the text (default: detected).")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="Text encoding of CSV/JSONL inputs (default: UTF-8, checked).")
    ] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter (default: detected).")] = None,
    on_bad_row: Annotated[
        str | None,
        typer.Option("--on-bad-row", help="fail (default, naming file and row) or skip (into bad_rows files)."),
    ] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local (default) or spark.")] = None,
    spark_master: Annotated[
        str | None, typer.Option("--spark-master", help="Spark master URL (default: score.spark_master, local[*]).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output written by another model version or inputs.")
    ] = False,
    watch: Annotated[
        Path | None,
        typer.Option("--watch", help="Serve the `score` flow: score new files of this inbox folder every --every."),
    ] = None,
    every: Annotated[str | None, typer.Option("--every", help="With --watch: 10m, 1h, ... (score.every).")] = None,
    name: Annotated[str, typer.Option("--name", help="With --watch: deployment name, score/NAME.")] = "inbox",
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
    config: Annotated[list[Path] | None, typer.Option("--config", "-c", help="YAML config; repeat to layer.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a field.")] = None,
) -> None:
    """Score files with registered models into a resumable Parquet dataset: every input column kept, plus row_id,
    label, p_<label> (NER: entities), model, version, onnx_sha256 and scored_at. A killed run continues where it
    stopped; an output of another model version or other inputs is refused (--overwrite)."""
    from flows.cli_common import config_paths, load_cli_config, user_errors
    from pipeline_lib.config import ConfigError, interval_seconds

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("pipeline_lib").setLevel(logging.INFO)
    with user_errors():
        cfg = load_cli_config(config, overrides)
        _check_choice("--on-bad-row", on_bad_row, ("fail", "skip"))
        _check_choice("--engine", engine, ("local", "spark"))
        if watch is not None:
            try:
                seconds = interval_seconds(every or cfg.score.every)
            except ValueError as exc:
                raise ConfigError(f"--every: {exc}") from None
            if inputs:
                raise ConfigError("--watch scores the files arriving in its folder: give no INPUT with it")
        else:
            if not inputs:
                raise ConfigError("give at least one INPUT (a file, folder or glob), or --watch INBOX")
            from pipeline_lib.scoring.engine import Options, score

            options = Options(text_column, encoding, delimiter, on_bad_row, engine, spark_master, overwrite)
            result = score(cfg, model, inputs, output, options)
    if watch is not None:
        from flows.score import serve

        typer.echo(f"serving score/{name}: {watch} scored into {output} every {every or cfg.score.every}", err=True)
        serve(
            str(watch),
            str(output),
            model,
            config_paths(config),
            overrides or [],
            seconds,
            name=name,
            text_column=text_column,
            encoding=encoding,
            on_bad_row=on_bad_row,
        )
        return
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{result['status']}: {result['rows_out']} rows scored by {', '.join(result['models'])} into "
        f"{result['output']} ({result['rows_bad']} bad rows skipped, {result['parts_written']} parts written, "
        f"{result['parts_resumed']} already there)"
        + (f", {result['rows_per_s']} rows/s" if result.get("rows_per_s") else "")
    )


def _check_choice(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    from pipeline_lib.config import ConfigError

    if value is not None and value not in allowed:
        raise ConfigError(f"{option} {value}: expected one of {', '.join(allowed)}")
