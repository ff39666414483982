"""The scored folder: part files written atomically, bad-row files, and `manifest.json`, the record of the runs that
wrote it. A run is identified by its key (models with versions and digests, inputs' digests, reading options): the
same key resumes, another key is refused unless the run appends (the `score` flow) or overwrites."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
FORMAT = "tunepipe-scored/1"
OURS = re.compile(r"^(part-.*\.parquet|bad_rows-.*\.parquet|manifest\.json|\..*\.tmp)$")


class ScoreError(ValueError):
    """A scoring run cannot go ahead (another model version or other inputs in the output, ...); nothing changed."""


class Output:
    """The output folder of a scoring run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def manifest_file(self) -> Path:
        return self.folder / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, None for a folder that does not exist or is empty; an error for a folder with other files."""
        if self.manifest_file.is_file():
            manifest = json.loads(self.manifest_file.read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                raise ScoreError(f"{self.manifest_file}: not a tunepipe scoring manifest (format {FORMAT} expected)")
            return manifest
        if self.folder.exists() and not self.folder.is_dir():
            raise ScoreError(f"--output {self.folder} is a file: give a folder (it will hold part files)")
        others = [p.name for p in self.folder.iterdir()] if self.folder.is_dir() else []
        if others:
            shown = ", ".join(sorted(others)[:5])
            raise ScoreError(
                f"--output {self.folder} holds files that tunepipe score did not write ({shown}): give an empty or "
                "new folder"
            )
        return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._atomic(self.manifest_file, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str)))

    def part(self, short: str, index: int) -> Path:
        return self.folder / f"part-{short}-{index:06d}.parquet"

    def bad_rows(self, short: str, index: int) -> Path:
        return self.folder / f"bad_rows-{short}-{index:06d}.parquet"

    def write_table(self, table: pa.Table, path: Path) -> None:
        """Write a Parquet file so that it either exists whole or not at all."""
        self._atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    def _atomic(self, path: Path, write: Any) -> None:
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove what scoring runs wrote here (and nothing else)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if OURS.match(path.name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a scored folder."""
    manifest = Output(Path(folder)).read_manifest()
    if manifest is None:
        raise ScoreError(f"{folder}: no {MANIFEST}: not a scored folder")
    return manifest


def read_scored(folder: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Every part of a scored folder as one table (schemas unified: parts of other inputs may have other columns)."""
    import pyarrow.dataset as ds

    parts = sorted(Path(folder).glob("part-*.parquet"))
    if not parts:
        raise ScoreError(f"{folder}: no part files")
    schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    return ds.dataset([str(p) for p in parts], schema=schema, format="parquet").to_table(columns=columns)


def describe_run(run: dict[str, Any]) -> str:
    models = ", ".join(f"{m['name']} v{m['version']} (onnx {m['onnx_sha256'][:12]})" for m in run["models"])
    inputs = ", ".join(f"{Path(i['path']).name} ({i['sha256'][:12]})" for i in run["inputs"][:3])
    more = f" and {len(run['inputs']) - 3} more" if len(run["inputs"]) > 3 else ""
    return f"{models} from {inputs}{more}"


def difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why the run key `new` is not that of the recorded run `old`, in words."""
    reasons = []
    if old["key"]["models"] != new["models"]:
        reasons.append("another model version")
    if old["key"]["inputs"] != new["inputs"]:
        reasons.append("other inputs")
    if old["key"]["options"] != new["options"]:
        changed = sorted(k for k in new["options"] if old["key"]["options"].get(k) != new["options"][k])
        reasons.append(f"other options ({', '.join(changed)})")
    return " and ".join(reasons) or "another run"
