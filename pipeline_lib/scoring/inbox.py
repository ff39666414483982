"""The inbox of the `score` flow: which files of a folder have not been scored into the output yet (by digest: a file
changed in place is new again, and is scored as a new input), and one run that scores them and appends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.scoring import inputs as input_files
from pipeline_lib.scoring.engine import Options, score
from pipeline_lib.scoring.models import resolve
from pipeline_lib.scoring.output import Output


def resolved(cfg: PipelineConfig, references: list[str]) -> list[dict[str, Any]]:
    """The version each reference names now (an alias is looked up again on every call)."""
    return [m.to_dict() for m in resolve(cfg, references)]


def scored_digests(output: Path) -> set[str]:
    """The digests of the inputs that complete runs scored into `output`."""
    manifest = Output(output).read_manifest()
    runs = manifest["runs"] if manifest else []
    return {entry["sha256"] for run in runs if run["status"] == "complete" for entry in run["inputs"]}


def new_files(inbox: Path, output: Path) -> list[dict[str, str]]:
    """The inbox's data files whose content was never scored into `output`: path and digest, in name order."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"inbox {inbox}: no such folder (--watch names the folder new files arrive in)")
    seen = scored_digests(Path(output))
    found = []
    for path in input_files.folder_files(inbox):
        sha = input_files.digest(path)
        if sha not in seen:
            found.append({"path": str(path), "sha256": sha})
    return found


def unfinished(output: Path) -> dict[str, Any] | None:
    """The output's last run when it did not finish (it is resumed, with its own model versions, first)."""
    manifest = Output(Path(output)).read_manifest()
    if manifest and manifest["runs"] and manifest["runs"][-1]["status"] != "complete":
        return manifest["runs"][-1]
    return None


def score_new(
    cfg: PipelineConfig, versions: list[str], files: list[str], output: Path, options: Options
) -> dict[str, Any]:
    """Finish an interrupted run, then score `files` with `versions` (NAME/VERSION), appending to `output`."""
    options = Options(**{**options.__dict__, "append": True})
    resumed = None
    last = unfinished(output)
    if last is not None:
        references = [f"{m['name']}/{m['version']}" for m in last["models"]]
        resumed = score(cfg, references, [i["path"] for i in last["inputs"]], output, options)
        done = {i["sha256"] for i in last["inputs"]}
        files = [f for f in files if input_files.digest(Path(f)) not in done]
    result = score(cfg, versions, files, output, options) if files else {"status": "nothing new", "rows_out": 0}
    return {**result, "resumed": resumed}
