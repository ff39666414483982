"""Throw-away projects as users have them: a git repository whose data files are tracked by DVC with a local
remote, committed, so that `tunepipe data add`, `dvc repro` and lineage work on them as in a real project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def env() -> dict[str, str]:
    """`tunepipe` and `dvc` from this interpreter's environment, whatever PATH says."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


def git_dvc_project(root: Path, data: dict[str, pd.DataFrame], ignore: str = ".tunepipe/\nartifacts/\n") -> Path:
    """`root` as a committed git + DVC project: each `data` frame written as CSV at its path and `dvc add`ed,
    pushed to a local remote beside `root` (whatever else is already in `root` is committed too)."""
    root.mkdir(parents=True, exist_ok=True)
    for path, frame in data.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / path, index=False)
    (root / ".gitignore").write_text(ignore)
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "t@example.com")
    sh(root, "git", "config", "user.name", "t")
    dvc(root, "init", "-q")
    dvc(root, "remote", "add", "-d", "local", str(root.parent / f"{root.name}-remote"))
    for path in data:
        dvc(root, "add", "-q", path)
    dvc(root, "push", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    return root
