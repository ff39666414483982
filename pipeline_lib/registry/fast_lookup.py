"""A registered model's local copy in milliseconds: `NAME@ALIAS` (or `NAME/VERSION`) resolved without importing
MLflow, for `tunepipe predict` and `serve`.

The reference is looked up straight from the store: for a local sqlite store, a read-only query of MLflow's own
tables (`registered_model_aliases`, `model_versions`, `model_version_tags`); for an MLflow server, its public REST
API. When the local copy of that version exists and was verified against the digest registered with it
(`store.DIGEST_TAG`), nothing else is needed; otherwise (or for any other kind of store, or a schema this code does
not know) the MLflow client resolves and downloads as usual (`store.onnx_dir_for`)."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry import store


@dataclass(frozen=True)
class Registered:
    """The version a reference names, with what `predict` and `serve` report about it."""

    name: str
    version: str
    run_id: str | None
    digest: str | None


@dataclass(frozen=True)
class LocalModel:
    registered: Registered
    folder: Path  # the verified local copy of its ONNX folder
    looked_up: str  # "sqlite", "rest" or "mlflow": how the reference was resolved


class Unreadable(Exception):
    """This store cannot be read without MLflow (another kind of store, or a schema this code does not know)."""


def lookup(uri: str, ref: store.ModelRef, timeout: float = 5.0) -> Registered | None:
    """The version `ref` names, read from the store without MLflow; None when nothing is registered under it.
    Raises `Unreadable` when this store cannot be read so (the caller then asks MLflow)."""
    try:
        if uri.startswith("sqlite:///"):
            return _from_sqlite(Path(uri.removeprefix("sqlite:///")), ref)
        if uri.startswith(("http://", "https://")):
            return _from_rest(uri.rstrip("/"), ref, timeout)
    except (sqlite3.Error, OSError, ValueError, KeyError) as exc:
        raise Unreadable(str(exc)) from exc
    raise Unreadable(f"{uri}: neither a local sqlite store nor an MLflow server")


def _from_sqlite(database: Path, ref: store.ModelRef) -> Registered | None:
    if not database.is_file():
        return None
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        version = ref.version
        if ref.alias:
            row = db.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (ref.name, ref.alias)
            ).fetchone()
            if row is None:
                return None
            version = str(row[0])
        found = db.execute(
            "SELECT run_id FROM model_versions WHERE name = ? AND version = ?", (ref.name, int(version))
        ).fetchone()
        if found is None:
            return None
        tag = db.execute(
            "SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = ?",
            (ref.name, int(version), store.DIGEST_TAG),
        ).fetchone()
    return Registered(ref.name, str(version), found[0], tag[0] if tag else None)


def _from_rest(base: str, ref: store.ModelRef, timeout: float) -> Registered | None:
    if ref.alias:
        query = urllib.parse.urlencode({"name": ref.name, "alias": ref.alias})
        url = f"{base}/api/2.0/mlflow/registered-models/alias?{query}"
    else:
        query = urllib.parse.urlencode({"name": ref.name, "version": ref.version})
        url = f"{base}/api/2.0/mlflow/model-versions/get?{query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # the configured tracking URI
            version = json.loads(response.read())["model_version"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # RESOURCE_DOES_NOT_EXIST: no such model, alias or version
            return None
        raise
    tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
    return Registered(ref.name, str(version["version"]), version.get("run_id"), tags.get(store.DIGEST_TAG))


def aliased(cfg: PipelineConfig, alias: str = store.CHAMPION) -> Registered | None:
    """The configured model's version under `alias` (None: none), read without MLflow where the store allows."""
    ref = store.ModelRef(name=cfg.registry.model_name, alias=alias)
    try:
        return lookup(store.tracking_uri(cfg), ref)
    except Unreadable:
        version = store.alias_version(store.connect(cfg), ref.name, alias)
        digest = None if version is None else (version.tags or {}).get(store.DIGEST_TAG)
        return None if version is None else Registered(ref.name, str(version.version), version.run_id, digest)


def local_model(cfg: PipelineConfig, reference: str) -> LocalModel:
    """The verified local copy of the version `reference` names: from the cache when it is there (no MLflow), else
    resolved and downloaded through the MLflow client."""
    ref = store.ModelRef.parse(reference)
    uri = store.tracking_uri(cfg)
    try:
        found = lookup(uri, ref)
    except Unreadable:
        found = None
    if found is not None:
        folder = store.copy_dir(cfg, found.name, found.version)
        if store.verified_copy(folder, found.version, found.digest):
            return LocalModel(found, folder, "sqlite" if uri.startswith("sqlite") else "rest")
    client = store.connect(cfg)
    version = store.resolve(client, ref)
    folder = store.onnx_dir_for(cfg, client, version.name, str(version.version))
    digest = (version.tags or {}).get(store.DIGEST_TAG)
    return LocalModel(Registered(version.name, str(version.version), version.run_id, digest), folder, "mlflow")
