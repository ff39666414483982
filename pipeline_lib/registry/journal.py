"""A registration's write-ahead journal: which MLflow run, version and alias an attempt got to, kept in the run
directory until the alias move (the commit point) succeeds, so an interrupted attempt is rolled back (or, if its
alias move did land, completed) the next time the server answers, by this process's retry or a later run."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.layout import RunDir
from pipeline_lib.registry import ledger, store

PENDING = "pending.json"
STATUS_TAG = "tunepipe.registration"
# stages up to here cannot have created a model version; from "version creation" on one may exist
BEFORE_VERSION = ("connecting", "run creation", "logging params, metrics and artifacts")


@dataclass
class Journal:
    path: Path
    tracking_uri: str
    name: str
    stage: str = "connecting"
    run_id: str | None = None
    version: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)  # alias, promoted, previous_champion, reason
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @classmethod
    def for_run(cls, run: RunDir, tracking_uri: str, name: str) -> Journal:
        path = run.registration.parent / PENDING
        return cls.load(path) if path.is_file() else cls(path, tracking_uri, name)

    @classmethod
    def load(cls, path: Path) -> Journal:
        return cls(path=path, **json.loads(path.read_text()))

    @property
    def pending(self) -> bool:
        return self.run_id is not None

    @property
    def abandoned(self) -> bool:
        """Its process is gone (a journal of a live registration, or of another host's, is never touched)."""
        host, _, pid = self.owner.rpartition(":")
        if host != socket.gethostname():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def at(self, stage: str, **fields: Any) -> None:
        """Record that the attempt reached `stage` (with what it created) before talking to the server."""
        self.stage = stage
        for key, value in fields.items():
            setattr(self, key, value)
        if self.run_id is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = {k: v for k, v in asdict(self).items() if k != "path"}
            staging = self.path.with_suffix(".tmp")
            staging.write_text(json.dumps(data, indent=2, sort_keys=True))
            staging.replace(self.path)  # a sweeping process never reads half a journal

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.__dict__.update(vars(Journal(self.path, self.tracking_uri, self.name)))  # owned by this process

    def left_behind(self) -> str:
        """What an abandoned attempt may have left on the server, for the final error message."""
        if self.stage in BEFORE_VERSION:
            return "nothing registered, alias unmoved"
        version = f"v{self.version}" if self.version else "a version"
        moved = "may have moved" if self.stage == "alias move" else "unmoved"
        return (
            f"{version} of run {self.run_id} may exist unpromoted, alias {moved}; the next registration against this "
            f"server settles it from {self.path}"
        )


def settle(client: Any, journal: Journal, why: str) -> bool:
    """Resolve an interrupted attempt on a reachable server. True: its alias move had landed, so it is complete
    (its run is marked FINISHED). False: it is rolled back: its ledger records and model versions are deleted and
    its MLflow run is marked FAILED. The journal is cleared either way; server errors propagate (journal kept)."""
    alias = journal.outcome.get("alias")
    if journal.version and alias:
        current = store.alias_version(client, journal.name, alias)
        if current is not None and str(current.version) == journal.version:
            client.set_tag(journal.run_id, STATUS_TAG, "complete")
            client.set_terminated(journal.run_id, "FINISHED")
            journal.clear()
            return True
    ledger.delete_entries(client, journal.name, run_id=journal.run_id)
    for version in client.search_model_versions(f"run_id = '{journal.run_id}'"):
        client.delete_model_version(version.name, version.version)
    client.set_tag(journal.run_id, STATUS_TAG, f"rolled back: {why}")
    client.set_terminated(journal.run_id, "FAILED")
    journal.clear()
    return False


def sweep(client: Any, artifacts_root: str | Path, tracking_uri: str, skip: Path | None = None) -> list[str]:
    """Settle every interrupted registration journaled under `artifacts_root` against this server; the run ids
    rolled back or completed."""
    settled = []
    for path in sorted(Path(artifacts_root).glob(f"runs/*/register/{PENDING}")):
        journal = Journal.load(path)
        if path == skip or journal.tracking_uri != tracking_uri or not journal.pending or not journal.abandoned:
            continue
        settled.append(str(journal.run_id))
        settle(client, journal, f"interrupted registration found in {path.parent.parent}")
    return settled
