"""Data and code versions: DVC-compatible content hashes, DVC pointers, restoring the data, the git commit."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import SPLITS, RunDir

DVC = [sys.executable, "-m", "dvc"]  # the DVC installed beside tunepipe, whatever PATH says
SEED_DATASET = Path(__file__).resolve().parents[1] / "resources" / "financial_sentiment_sample.csv"


class DataUnavailableError(RuntimeError):
    """The configured data file is missing and could not be restored."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """A hash of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes: what DVC 3 records for a tracked file."""
    return file_digest(path, "md5")


def dir_md5(path: Path) -> str:
    """DVC's hash of a tracked directory: MD5 of its sorted listing, suffixed `.dir`."""
    entries = [
        {"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
        for f in sorted(p for p in path.rglob("*") if p.is_file())
    ]
    listing = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(listing).hexdigest() + ".dir"


def content_md5(path: Path) -> str:
    return dir_md5(path) if path.is_dir() else file_md5(path)


def dvc_pointer_md5(path: Path) -> str | None:
    """The hash recorded in `<path>.dvc`, when the data is DVC-tracked that way."""
    pointer = path.with_name(path.name + ".dvc")
    if not pointer.is_file():
        return None
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def split_md5(run: RunDir) -> dict[str, str]:
    """Content hash of each validated split (text and label, or tokens and tags for token classification)."""
    import pandas as pd
    import pyarrow.parquet as pq

    hashes = {}
    for split in SPLITS:
        names = pq.read_schema(run.split_file(split)).names
        columns = ["tokens", "tags"] if "tags" in names else ["text", "label"]
        frame = pd.read_parquet(run.split_file(split), columns=columns)
        hashes[split] = hashlib.md5(frame.to_json(orient="values").encode()).hexdigest()
    return hashes


def data_fingerprint(cfg: PipelineConfig, run: RunDir | None = None) -> dict[str, Any]:
    """What the model was trained on: the source's DVC hash (and its pointer's), and each split's."""
    path = Path(cfg.data.path)
    fingerprint: dict[str, Any] = {"path": cfg.data.path, "md5": content_md5(path) if path.exists() else None}
    fingerprint["dvc_md5"] = dvc_pointer_md5(path)
    fingerprint["dvc_in_sync"] = fingerprint["dvc_md5"] is not None and fingerprint["dvc_md5"] == fingerprint["md5"]
    if run is not None:
        fingerprint["splits"] = split_md5(run)
    return fingerprint


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The commit the code ran from, and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def ensure_data(cfg: PipelineConfig) -> str:
    """Make the configured data present: as is, from the DVC remote, or (for the packaged default
    dataset) from the seed copy whose hash matches the DVC pointer. Returns what was done."""
    path = Path(cfg.data.path)
    if path.exists():
        return f"{path}: present (md5 {content_md5(path)})"
    expected = dvc_pointer_md5(path)
    if expected is None:
        raise DataUnavailableError(f"{path}: no such file, and no {path.name}.dvc pointer to restore it from")
    pulled = subprocess.run([*DVC, "pull", "-q", str(path) + ".dvc"], capture_output=True, text=True)
    if pulled.returncode == 0 and path.exists():
        return f"{path}: pulled from the DVC remote (md5 {expected})"
    if file_md5(SEED_DATASET) == expected:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SEED_DATASET, path)
        pointer = str(path) + ".dvc"
        pushed = subprocess.run([*DVC, "commit", "-f", "-q", pointer], capture_output=True, text=True)
        if pushed.returncode == 0:
            pushed = subprocess.run([*DVC, "push", "-q", pointer], capture_output=True, text=True)
        note = (
            "and pushed to the DVC remote" if pushed.returncode == 0 else f"(dvc push failed: {pushed.stderr.strip()})"
        )
        return f"{path}: restored from the packaged seed dataset {note} (md5 {expected})"
    raise DataUnavailableError(
        f"{path}: missing; `dvc pull` failed ({pulled.stderr.strip() or 'no remote copy'}) "
        f"and it is not the packaged seed dataset (pointer md5 {expected})"
    )
