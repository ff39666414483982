"""The run directory: the files each step reads and writes (steps pass files, not objects)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run's working directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # validate
    def split_file(self, split: str) -> Path:
        return self.root / "data" / f"{split}.parquet"

    @property
    def validation_report(self) -> Path:
        return self.root / "validation" / "report.json"

    @property
    def gx_result(self) -> Path:
        return self.root / "validation" / "gx_result.json"

    @property
    def profile(self) -> Path:  # the training split's profile (`data.drift`), logged with the version
        return self.root / "validation" / "profile.json"

    @property
    def label_issues(self) -> Path:  # likely mislabelled rows (`data.label_issues`), most suspect first
        return self.root / "validation" / "label_issues.parquet"

    @property
    def drift(self) -> Path:  # the training split against the champion's
        return self.root / "validation" / "drift.json"

    # tokenize
    @property
    def tokenized(self) -> Path:
        return self.root / "tokenized"

    # train
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def train_history(self) -> Path:
        return self.root / "train" / "history.json"

    @property
    def train_summary(self) -> Path:
        return self.root / "train" / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "train" / "checkpoints"

    # evaluate
    @property
    def metrics(self) -> Path:
        return self.root / "eval" / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "eval" / "test_logits.npy"

    @property
    def predictions_info(self) -> Path:
        """What computed the saved test logits: the served ONNX runtime or PyTorch, precision, device."""
        return self.root / "eval" / "test_logits.json"

    @property
    def confusion_png(self) -> Path:
        return self.root / "eval" / "confusion_matrix.png"

    # export
    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def export_summary(self) -> Path:
        return self.root / "export" / "summary.json"

    @property
    def export_scored(self) -> Path:
        """The served graph's logits on the test rows the export step scored (for evaluate: `runtime.scored_rows`)."""
        return self.root / "export" / "served_test_logits.npz"

    # gate
    @property
    def gate_verdicts(self) -> Path:
        return self.root / "gates" / "verdicts.json"

    # register
    @property
    def registration(self) -> Path:
        return self.root / "register" / "result.json"

    @property
    def seen_keys(self) -> Path:  # logged as data/seen_keys.parquet (gates.champion.SEEN_KEYS_ARTIFACT)
        return self.root / "register" / "seen_keys.parquet"


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON atomically (temp file + rename) so a killed step never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def cache_staging_dir(target: Path) -> Path:
    """A private, empty folder beside `target` to write a cache entry into before `publish_cache_entry` (private so
    that two processes filling the same entry never write into, or delete, each other's half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))


def publish_cache_entry(staging: Path, target: Path, marker: str) -> bool:
    """Move a fully written `staging` folder to `target` in one rename; `marker` is the file a complete entry
    has. When a concurrent writer published a complete `target` first, keep theirs (same inputs, same
    content) and drop ours. True when ours was published."""
    try:
        if target.exists() and not (target / marker).is_file():
            shutil.rmtree(target, ignore_errors=True)  # a half entry left by an older, non-atomic writer
        staging.rename(target)
        return True
    except OSError:
        if not (target / marker).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False


def read_json(path: Path) -> Any:
    """Read a JSON file written by an earlier step, naming the step when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the step that writes it first")
    return json.loads(path.read_text(encoding="utf-8"))


def new_run(artifacts_root: str | Path) -> RunDir:
    """A fresh run directory `<artifacts>/runs/<UTC time>-<random>`, so concurrent runs never collide."""
    import secrets
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(artifacts_root) / "runs" / f"{stamp}-{secrets.token_hex(3)}"
    root.mkdir(parents=True, exist_ok=False)
    return RunDir(root)


def latest_unfinished_run(artifacts_root: str | Path) -> RunDir | None:
    """The newest run directory that never registered a model (an interrupted run to resume)."""
    runs = sorted((Path(artifacts_root) / "runs").glob("*/"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    return next((RunDir(p) for p in runs if not RunDir(p).registration.is_file()), None)
