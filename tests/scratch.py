"""Where test runs put their scratch files, and how they give the disk back: a full run trains and exports dozens of
models (each run folder holds ~270 MB of weights and ONNX graphs), so nothing may outlive the module or session that
made it. Set TUNEPIPE_KEEP_TEST_FILES=1 to keep everything for a post-mortem."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

KEEP_ENV = "TUNEPIPE_KEEP_TEST_FILES"


def keep_files() -> bool:
    return os.environ.get(KEEP_ENV, "") not in ("", "0")


def shared_cache_folder(run_id: str) -> Path:
    """The step cache every pytest-xdist worker of one test run shares (removed by the controller at its end)."""
    return Path(tempfile.gettempdir()) / f"tunepipe-test-cache-{run_id}"


def remove_new_entries(folder: Path, before: set[str]) -> None:
    """Remove what appeared in `folder` since `before` (a listing of its names)."""
    if keep_files() or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name not in before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def remove(folder: Path) -> None:
    if not keep_files():
        shutil.rmtree(folder, ignore_errors=True)
