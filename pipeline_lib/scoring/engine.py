"""`tunepipe score`: registered models applied to whole files, chunk by chunk, into a resumable Parquet dataset.

1. resolve each `--model` to a version and its verified ONNX folder; 2. expand and inspect the inputs (format,
digest, encoding, text column); 3. read them once to count rows and find bad rows (`fail`: the first is an error,
before anything is written); 4. check the output folder (same run: resume; another: refused unless appending or
`--overwrite`); 5. score each chunk not yet written (locally with `OnnxPredictor`, or on Spark) and write its part;
6. record the run as complete in the manifest."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from pipeline_lib.config import PipelineConfig, ScoreConfig
from pipeline_lib.data.readers import DataFormatError
from pipeline_lib.progress import ProgressReporter
from pipeline_lib.scoring import chunks as chunking
from pipeline_lib.scoring import inputs as input_files
from pipeline_lib.scoring.inputs import MARK, InputFile
from pipeline_lib.scoring.models import ScoringModel, identity_columns, predicted_columns, resolve
from pipeline_lib.scoring.output import FORMAT, Output, ScoreError, describe_run, difference

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What an engine does to a chunk: the models' columns (prefixed) for these texts, in order."""

    def columns(self, texts: list[str]) -> dict[str, pa.Array]: ...

    def close(self) -> None: ...


class LocalScorer:
    """Every model's `OnnxPredictor` in this process (length-grouped batches, onnxruntime on all cores)."""

    def __init__(self, models: list[ScoringModel], settings: ScoreConfig) -> None:
        self.models, self.settings = models, settings

    def columns(self, texts: list[str]) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        for model in self.models:
            scored = predicted_columns(model, texts, self.settings.batch_size, self.settings.num_threads)
            for name, array in {**scored, **identity_columns(model, len(texts))}.items():
                out[model.prefix + name] = array
        return out

    def close(self) -> None:
        pass


@dataclass
class Options:
    """One run's reading and writing options (the config's `score:` section, overridden by the command's)."""

    text_column: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    on_bad_row: str | None = None
    engine: str | None = None
    spark_master: str | None = None
    overwrite: bool = False
    append: bool = False  # the `score` flow: add a run to the folder instead of refusing another one


def settings_for(cfg: PipelineConfig, options: Options) -> ScoreConfig:
    given = {"on_bad_row": options.on_bad_row, "engine": options.engine, "spark_master": options.spark_master}
    updates = {k: v for k, v in given.items() if v is not None}
    return cfg.score.model_copy(update=updates) if updates else cfg.score


def score(cfg: PipelineConfig, references: list[str], items: list[str], output: str | Path, options: Options) -> dict:
    """Score the files `items` name with the models `references` name into the folder `output`; the run's summary.
    Every check that can fail does so before the output is touched."""
    started = time.perf_counter()
    settings = settings_for(cfg, options)
    models = resolve(cfg, references)
    specs = [
        input_files.inspect(path, options.text_column, options.encoding, options.delimiter)
        for path in input_files.expand(items)
    ]
    out = Output(Path(output))
    manifest = out.read_manifest()
    key = run_key(models, specs, settings)
    if options.append and manifest and manifest["runs"] and manifest["runs"][-1]["status"] != "complete":
        last = manifest["runs"][-1]
        if last["key"] != key:
            raise ScoreError(
                f"{out.folder}: the last run ({describe_run(last)}) did not finish: run it again to resume it "
                "before adding new files"
            )
    counts = [count_rows(spec, settings) for spec in specs]
    manifest, run, resumed = plan(out, manifest, key, models, specs, counts, settings, options)
    if run["status"] == "complete":
        return summary(out, run, "already complete", 0, 0)
    if not resumed:
        out.write_manifest(manifest)
    scorer = make_scorer(cfg, models, settings)
    written = skipped = 0
    remaining = sum(
        i["rows"] for i in run["inputs"] if i["parts_done"] < i["parts"]
    )  # an upper bound when a file is half done
    progress = ProgressReporter(f"score ({describe_run(run)})", remaining, "rows", cfg.output)
    try:
        for spec, entry in zip(specs, run["inputs"], strict=True):
            for chunk in chunking.chunks(spec, settings.chunk_rows):
                if out.part(spec.short, chunk.index).is_file():
                    skipped += 1
                    continue
                write_chunk(out, spec, chunk, scorer, models, settings)
                written += 1
                entry["parts_done"] = chunk.index + 1
                run["rows_scored"] = run.get("rows_scored", 0) + chunk.table.num_rows
                out.write_manifest(manifest)
                progress.advance(chunk.table.num_rows, f"part {chunk.index + 1}/{entry['parts']} of {spec.path.name}")
            entry["parts_done"] = entry["parts"]
    finally:
        scorer.close()
        progress.close()
    run["status"] = "complete"
    run["finished_at"] = now().isoformat()
    run["wall_s"] = round(run.get("wall_s", 0.0) + time.perf_counter() - started, 3)
    run["rows_per_s"] = round(run["rows_in"] / run["wall_s"], 1) if run["wall_s"] else None
    out.write_manifest(manifest)
    return summary(out, run, "complete", written, skipped)


def make_scorer(cfg: PipelineConfig, models: list[ScoringModel], settings: ScoreConfig) -> Scorer:
    if settings.engine == "spark":
        from pipeline_lib.registry.store import tracking_uri
        from pipeline_lib.scoring.spark import SparkScorer

        return SparkScorer(models, settings, tracking_uri(cfg))
    return LocalScorer(models, settings)


def now() -> datetime:
    return datetime.now(timezone.utc)


def run_key(models: list[ScoringModel], specs: list[InputFile], settings: ScoreConfig) -> dict[str, Any]:
    """What identifies a run's output: the models, the inputs' digests and the options that shape each row."""
    return {
        "models": [[m.name, m.version, m.digest, m.prefix] for m in models],
        "inputs": [[s.sha256, s.text_column] for s in specs],
        "options": {
            "chunk_rows": settings.chunk_rows,
            "max_chars": settings.max_chars,
            "on_bad_row": settings.on_bad_row,
            "id_column": settings.id_column,
        },
    }


def count_rows(spec: InputFile, settings: ScoreConfig) -> dict[str, int]:
    """Rows and bad rows of a file (one read, before anything is written); with `on_bad_row: fail`, the first bad
    row is an error naming file, row and reason."""
    rows = bad = 0
    for chunk in chunking.chunks(spec, settings.chunk_rows):
        found = chunking.bad_rows(spec, chunk.table, settings.max_chars)
        if found and settings.on_bad_row == "fail":
            position, reason = found[0]
            raise DataFormatError(
                spec.path,
                f"bad row: {reason}" + (f" ({len(found)} bad rows in this chunk)" if len(found) > 1 else ""),
                row=chunk.first_row + position,
                field=spec.text_column,
                expected="a non-empty text of at most score.max_chars characters (--on-bad-row skip skips such rows "
                "into a bad_rows file; raise the limit with --set score.max_chars=N)",
            )
        rows += chunk.table.num_rows
        bad += len(found)
    if rows == 0:
        raise DataFormatError(spec.path, "file holds no data rows", expected="at least one row to score")
    return {"rows": rows, "bad": bad}


def plan(
    out: Output,
    manifest: dict[str, Any] | None,
    key: dict[str, Any],
    models: list[ScoringModel],
    specs: list[InputFile],
    counts: list[dict[str, int]],
    settings: ScoreConfig,
    options: Options,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The manifest and the run to carry out: the recorded run with this key (resumed), or a new one."""
    if manifest is not None:
        for run in reversed(manifest["runs"]):
            if run["key"] == key:
                return manifest, run, True
        if not options.append:
            if not options.overwrite:
                last = manifest["runs"][-1]
                new = {"models": key["models"], "inputs": key["inputs"], "options": key["options"]}
                raise ScoreError(
                    f"--output {out.folder} was written by {describe_run(last)}; this run has "
                    f"{difference(last, new)}: pass --overwrite to replace it, or give another --output"
                )
            out.clear()
            manifest = None
    manifest = manifest or {"format": FORMAT, "runs": []}
    run = {
        "id": uuid.uuid4().hex[:12],
        "status": "running",
        "started_at": now().isoformat(),
        "engine": settings.engine,
        "key": key,
        "models": [m.to_dict() for m in models],
        "inputs": [
            {
                **spec.to_dict(),
                "rows": c["rows"],
                "bad": c["bad"],
                "parts": -(-c["rows"] // settings.chunk_rows),
                "parts_done": 0,
            }
            for spec, c in zip(specs, counts, strict=True)
        ],
        "rows_in": sum(c["rows"] for c in counts),
        "rows_bad": sum(c["bad"] for c in counts),
        "rows_out": sum(c["rows"] - c["bad"] for c in counts),
    }
    manifest["runs"].append(run)
    return manifest, run, False


def write_chunk(
    out: Output,
    spec: InputFile,
    chunk: chunking.Chunk,
    scorer: Scorer,
    models: list[ScoringModel],
    settings: ScoreConfig,
) -> None:
    """Score one chunk and write its part (its bad rows first, so a part on disk means the chunk is done)."""
    table = chunk.table
    bad = chunking.bad_rows(spec, table, settings.max_chars)
    positions = list(range(table.num_rows))
    if bad:
        if settings.on_bad_row == "fail":  # the file changed since it was counted
            position, reason = bad[0]
            raise DataFormatError(spec.path, f"bad row: {reason}", row=chunk.first_row + position)
        skip = {p for p, _ in bad}
        out.write_table(bad_rows_table(spec, chunk, bad, settings), out.bad_rows(spec.short, chunk.index))
        positions = [p for p in positions if p not in skip]
        table = table.take(pa.array(positions, pa.int64()))
    texts = table.column(spec.text_column).to_pylist() if table.num_rows else []
    scored = scorer.columns(texts) if texts else {}
    part = assemble(spec, chunk, table, positions, scored, models, settings)
    out.write_table(part, out.part(spec.short, chunk.index))


def row_ids(spec: InputFile, chunk: chunking.Chunk, positions: list[int]) -> list[str]:
    return [f"{spec.short}:{chunk.first_row + p}" for p in positions]


def assemble(
    spec: InputFile,
    chunk: chunking.Chunk,
    table: pa.Table,
    positions: list[int],
    scored: dict[str, pa.Array],
    models: list[ScoringModel],
    settings: ScoreConfig,
) -> pa.Table:
    """Input columns (a clash with an added name renamed `<name>_input`), row id, the models' columns, scored_at."""
    added = [name for m in models for name in m.output_names()] + ["scored_at"]
    id_name = settings.id_column
    renamed = {c: f"{c}_input" if c in added else c for c in table.column_names}
    table = table.rename_columns([renamed[c] for c in table.column_names])
    if id_name in table.column_names:
        table = table.set_column(table.column_names.index(id_name), id_name, table.column(id_name).cast(pa.string()))
    else:
        table = table.append_column(id_name, pa.array(row_ids(spec, chunk, positions), pa.string()))
    for name in added[:-1]:
        table = table.append_column(name, scored[name] if scored else pa.array([], _empty_type(name)))
    stamp = pa.array([now()] * table.num_rows, pa.timestamp("us", tz="UTC"))
    return table.append_column("scored_at", stamp)


def _empty_type(name: str) -> pa.DataType:
    return pa.float32() if name.rsplit("__", 1)[-1].startswith("p_") else pa.string()


def bad_rows_table(
    spec: InputFile, chunk: chunking.Chunk, bad: list[tuple[int, str]], settings: ScoreConfig
) -> pa.Table:
    column = chunk.table.column(spec.text_column) if spec.text_column in chunk.table.column_names else None
    texts = column.to_pylist() if column is not None else [None] * chunk.table.num_rows
    id_name = settings.id_column
    if id_name in chunk.table.column_names:
        ids = [None if v is None else str(v) for v in chunk.table.column(id_name).to_pylist()]
        ids = [ids[p] for p, _ in bad]
    else:
        ids = row_ids(spec, chunk, [p for p, _ in bad])

    def shown(value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).replace(MARK, "\ufffd")
        return text[:1000] + ("…" if len(text) > 1000 else "")

    return pa.table(
        {
            "source": pa.array([str(spec.path)] * len(bad), pa.string()),
            "row": pa.array([chunk.first_row + p for p, _ in bad], pa.int64()),
            id_name: pa.array(ids, pa.string()),
            "reason": pa.array([reason for _, reason in bad], pa.string()),
            "text": pa.array([shown(texts[p]) for p, _ in bad], pa.string()),
        }
    )


def summary(out: Output, run: dict[str, Any], status: str, written: int, skipped: int) -> dict[str, Any]:
    return {
        "output": str(out.folder),
        "status": status,
        "run": run["id"],
        "engine": run.get("engine", "local"),
        "models": [f"{m['name']} v{m['version']}" for m in run["models"]],
        "inputs": len(run["inputs"]),
        "rows_in": run["rows_in"],
        "rows_out": run["rows_out"],
        "rows_bad": run["rows_bad"],
        "parts_written": written,
        "parts_resumed": skipped,
        "wall_s": run.get("wall_s"),
        "rows_per_s": run.get("rows_per_s"),
    }
