"""Throw-away project repositories for integration tests: git with a DVC-tracked dataset on a local remote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from .servers import BIN, child_env


def sh(cwd: Path, *args: str) -> str:
    """Run a command in `cwd` with the venv's executables first on PATH; its stdout, or fail with its output."""
    done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, f"{BIN}/dvc", *args)


def versioned_project(root: Path, data: str, remote: str = "local", *git_init: str) -> Path:
    """Make `root` (with `data` and a .gitignore already in it) a git repository whose `data` is a DVC version
    pushed to a local remote beside `root`; everything committed. Returns the remote's folder."""
    storage = root.parent / f"{root.name}-remote"
    sh(root, "git", "init", "-q", *git_init)
    sh(root, "git", "config", "user.email", "t@example.com")
    sh(root, "git", "config", "user.name", "t")
    sh(root, f"{BIN}/dvc", "init", "-q")
    sh(root, f"{BIN}/dvc", "remote", "add", "-d", remote, str(storage))
    sh(root, f"{BIN}/dvc", "add", "-q", data)
    sh(root, f"{BIN}/dvc", "push", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    return storage


def git_dvc_project(root: Path, path: str, frame: pd.DataFrame, ignore: str = ".tunepipe/\nartifacts/\n") -> Path:
    """`root` as a committed git + DVC project whose dataset `path` holds `frame` as CSV (whatever else is already
    in `root` is committed too). Returns `root`."""
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / path, index=False)
    (root / ".gitignore").write_text(ignore)
    versioned_project(root, path)
    return root
