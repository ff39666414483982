"""`NAME@ALIAS` resolved without MLflow's client (a read-only query of a local sqlite store), and local copies used
only once verified against the digest registered with the version."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pipeline_lib.registry import store
from pipeline_lib.registry.fast_lookup import Unreadable, local_model, lookup
from tests.unit.stores import store_with_versions

NAME = "fast"


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg, client, runs = store_with_versions(tmp_path, monkeypatch, NAME, 2)
    client.set_model_version_tag(NAME, "2", store.DIGEST_TAG, "d" * 64)
    client.set_registered_model_alias(NAME, "champion", "2")
    return cfg, client, runs


def test_alias_and_version_resolve_from_the_sqlite_tables(registered):
    cfg, client, runs = registered
    uri = store.tracking_uri(cfg)
    found = lookup(uri, store.ModelRef.parse(f"{NAME}@champion"))
    assert (found.version, found.run_id, found.digest) == ("2", runs[1], "d" * 64)
    first = lookup(uri, store.ModelRef.parse(f"{NAME}/1"))
    assert (first.version, first.run_id, first.digest) == ("1", runs[0], None)
    assert lookup(uri, store.ModelRef.parse(f"{NAME}@nobody")) is None
    assert lookup(uri, store.ModelRef.parse(f"{NAME}/9")) is None
    client.set_registered_model_alias(NAME, "champion", "1")  # a moved alias is seen at once
    assert lookup(uri, store.ModelRef.parse(f"{NAME}@champion")).version == "1"


def test_a_store_it_cannot_read_is_said_so(tmp_path: Path):
    broken = tmp_path / "broken.db"
    sqlite3.connect(broken).execute("CREATE TABLE unrelated (x)").connection.commit()
    with pytest.raises(Unreadable):
        lookup(f"sqlite:///{broken}", store.ModelRef.parse("m@champion"))
    with pytest.raises(Unreadable):
        lookup("databricks", store.ModelRef.parse("m@champion"))


def test_a_local_copy_is_used_only_when_verified_for_that_version(registered):
    cfg, _, _ = registered
    folder = store.copy_dir(cfg, NAME, "2")
    folder.mkdir(parents=True)
    (folder / "tunepipe.json").write_text("{}")
    assert not store.verified_copy(folder, "2", "d" * 64)  # no marker: never verified
    (folder / store.COPY_MARKER).write_text(json.dumps({"version": "2", "digest": "e" * 64}))
    assert not store.verified_copy(folder, "2", "d" * 64)  # verified against another digest
    (folder / store.COPY_MARKER).write_text(json.dumps({"version": "2", "digest": "d" * 64}))
    assert store.verified_copy(folder, "2", "d" * 64)
    found = local_model(cfg, f"{NAME}@champion")
    assert (found.folder, found.looked_up, found.registered.version) == (folder, "sqlite", "2")


def test_folder_digest_covers_names_and_bytes_but_not_the_marker(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one")
    before = store.folder_digest(tmp_path)
    (tmp_path / store.COPY_MARKER).write_text("{}")
    assert store.folder_digest(tmp_path) == before
    (tmp_path / "a.txt").write_text("two")
    assert store.folder_digest(tmp_path) != before
