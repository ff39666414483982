"""Batch scoring of files and tables with registered models: `tunepipe score`, its Spark engine and the `score` flow.

Between `registry/` (it resolves `NAME@ALIAS` to a verified local ONNX folder) and `serving/` (it serves nobody).

**The output contract** (shared with the sentiment trend, issue 27). `tunepipe score --model A [--model B ...]
INPUT... --output OUT` writes a folder OUT holding

- `part-<input sha256[:12]>-<chunk>.parquet`: the scored rows, `score.chunk_rows` input rows per part, each with

  - every input column, unchanged (a column named like one of the added columns is renamed `<name>_input`);
  - `row_id` (`score.id_column`, string): the input's own column of that name, cast to string, when it has one, else
    `<input sha256[:12]>:<row number>` (1-based data row of that file); unique per input row, stable across runs;
  - for the FIRST model, unprefixed: `label` and one `p_<label>` (float32) per label (NER: `entities`, a JSON list of
    `{type, start, end, text, score}`), `model` (registered name), `version` (string), `onnx_sha256` (the digest of
    the ONNX folder registered with the version);
  - for each further model, the same columns prefixed with its registered name and a double underscore:
    `topics__label`, `topics__p_tech`, `topics__model`, `topics__version`, `topics__onnx_sha256`;
  - `scored_at` (timestamp, UTC, microseconds), shared by all models of the row.

- `manifest.json`: the runs that wrote the folder, each with its models (name, version, digest, reference), inputs
  (path, size, sha256, rows, bad rows, parts), rows in / out / bad, wall time and rows/s, and its status
  (`running`, `complete`); `read_manifest` reads it.
- `bad_rows-<input sha256[:12]>-<chunk>.parquet` (only with `--on-bad-row skip`): `source`, `row`, `row_id`,
  `reason`, `text` of every skipped row.

Every input row lands in exactly one part (or one bad_rows file) once a run completes; a killed run resumes from its
last finished part. `read_scored(OUT)` reads the parts as one table (schemas unified).
"""
