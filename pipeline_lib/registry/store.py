"""MLflow access: the tracking store, model references and aliases, and local copies of registered versions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry.errors import RegistryError
from pipeline_lib.registry.retries import bound_http_retries

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelRef:
    """`NAME@ALIAS` or `NAME/VERSION`."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if "@" in text:
            name, alias = text.rsplit("@", 1)
            if name and alias:
                return cls(name=name, alias=alias)
        elif "/" in text:
            name, version = text.rsplit("/", 1)
            if name and version.isdigit():
                return cls(name=name, version=version)
        raise RegistryError(
            f"model reference {text!r}: expected NAME@ALIAS (e.g. financial-sentiment@champion) or NAME/VERSION"
        )

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def tracking_uri(cfg: PipelineConfig) -> str:
    """The configured store, else $MLFLOW_TRACKING_URI, else a local sqlite store under `paths.store`."""
    if cfg.registry.tracking_uri:
        return cfg.registry.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = Path(cfg.paths.store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def connect(cfg: PipelineConfig) -> Any:
    """An MlflowClient on the configured store (also made the process default for `mlflow.*` calls)."""
    import mlflow
    from mlflow import MlflowClient

    bound_http_retries(cfg.registry)
    uri = tracking_uri(cfg)
    user_env = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow also exports the URI to the environment; put the user's back, so the next config's store is honoured.
    for key, value in user_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # MLflow creates and migrates a sqlite store on first use, and two processes doing that at once collide
    # (`table experiments already exists`): first use goes through an OS file lock beside the database.
    import fcntl

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)  # as MLflow does for a new store
    with database.with_name(f"{database.name}.create.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # tracking tables
            client.search_registered_models(max_results=1)  # registry tables
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return client


def experiment_id(cfg: PipelineConfig, client: Any) -> str:
    """The experiment's id, created on first use (artifacts under `paths.store` for a local store)."""
    found = client.get_experiment_by_name(cfg.registry.experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri(cfg).startswith("sqlite:") or tracking_uri(cfg).startswith("file:"):
        location = (Path(cfg.paths.store).resolve() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(cfg.registry.experiment, artifact_location=location)
    except Exception:  # created concurrently by another run
        found = client.get_experiment_by_name(cfg.registry.experiment)
        if found is None:
            raise
        return found.experiment_id


def is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return (
        code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or "not found" in str(exc).lower()
    )


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The model version an alias points at, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise


def resolve(client: Any, ref: ModelRef) -> Any:
    """The model version a reference names; a clear error when it does not exist."""
    from mlflow.exceptions import MlflowException

    if ref.alias:
        version = alias_version(client, ref.name, ref.alias)
        if version is None:
            raise RegistryError(f"{ref}: no such registered model or alias (is the tracking URI right?)")
        return version
    try:
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        raise RegistryError(f"{ref}: no such registered model version") from exc


DIGEST_TAG = "onnx.sha256"  # on each model version: the digest of its ONNX folder, written at registration
COPY_MARKER = ".tunepipe-copy.json"  # in a local copy: the version and digest it was verified against


def folder_digest(folder: Path) -> str:
    """SHA-256 over a folder's files (relative path and content, sorted), the copy marker left out."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COPY_MARKER):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def copy_dir(cfg: PipelineConfig, name: str, version: str) -> Path:
    """Where the local copy of `name/version`'s ONNX folder lives."""
    return Path(cfg.paths.store).resolve() / "models" / name / f"v{version}"


def verified_copy(folder: Path, version: str, digest: str | None) -> bool:
    """Whether `folder` is a complete local copy of `version`, verified against `digest` (when the version has one)."""
    marker = folder / COPY_MARKER
    if not marker.is_file() or not (folder / "tunepipe.json").is_file():
        return False
    recorded = json.loads(marker.read_text())
    return recorded.get("version") == str(version) and (digest is None or recorded.get("digest") == digest)


def onnx_dir_for(cfg: PipelineConfig, client: Any, name: str, version: str) -> Path:
    """The ONNX folder (graph + tokenizer + tunepipe.json) of a registered version: downloaded once, checked
    against the digest registered with it (`onnx.sha256`), and cached under `paths.store/models`."""
    import mlflow

    target = copy_dir(cfg, name, version)
    expected = (client.get_model_version(name, version).tags or {}).get(DIGEST_TAG)
    if verified_copy(target, version, expected):
        return target
    staging = Path(tempfile.mkdtemp(dir=_ensure(target.parent), prefix=f".v{version}."))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(staging), tracking_uri=tracking_uri(cfg)
        )
        found = next(staging.rglob("tunepipe.json"), None)
        if found is None:
            raise RegistryError(f"{name}/{version}: the registered model has no ONNX folder (tunepipe.json)")
        digest = folder_digest(found.parent)
        if expected is not None and digest != expected:
            raise RegistryError(
                f"{name}/{version}: the downloaded ONNX folder's digest {digest[:12]} differs from the registered "
                f"{expected[:12]} ({DIGEST_TAG}): the artifact store holds another or a damaged copy; nothing used"
            )
        (found.parent / COPY_MARKER).write_text(json.dumps({"version": str(version), "digest": digest}))
        shutil.rmtree(target, ignore_errors=True)
        found.parent.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_artifact(cfg: PipelineConfig, run_id: str, artifact: str) -> Path | None:
    """A run's artifact file, downloaded once and cached under `paths.store/runs`; None when the run has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    target = Path(cfg.paths.store).resolve() / "runs" / run_id / artifact
    if target.is_file():
        return target
    staging = Path(tempfile.mkdtemp(dir=_ensure(target.parent), prefix=f".{target.name}."))
    try:
        try:
            found = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=artifact, dst_path=str(staging), tracking_uri=tracking_uri(cfg)
                )
            )
        except (MlflowException, OSError) as exc:
            if is_missing(exc) or isinstance(exc, OSError):
                return None
            raise
        if not found.is_file():
            return None
        found.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def alias_lock(name: str) -> Iterator[None]:
    """Serialise check-and-move of an alias between processes sharing a local sqlite store (an OS file lock beside
    the database). MLflow offers no compare-and-swap: against a remote tracking server, give the retrain deployment
    a Prefect concurrency limit of 1 instead (see infra/README.md)."""
    import fcntl

    import mlflow

    uri = mlflow.get_registry_uri() or ""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///")).with_suffix(f".{hashlib.md5(name.encode()).hexdigest()[:12]}.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
