"""Confinement: every path a configuration names must resolve inside a root the configuration declares.

A config (YAML file, `--set` overrides, a deployment's parameters) decides what the pipeline opens. `confine`
runs once, after loading and before anything is read or written, and refuses any path that resolves (`..`,
absolute paths and symlinks followed) outside `paths.read_roots` for what is read (`data.path`, `data.files`,
a local `model.name` folder) or outside `paths.write_roots` for what is written (`paths.artifacts`,
`paths.store`, a local `registry.tracking_uri`, `serve.log_path`, a local `tune.storage`; the tuned overlay in
`tune.overlay_dir` is checked with `check_write` when written); what may be written may also be read. Paths and
roots are relative to the working directory, as the pipeline opens them. Reaching outside needs the root listed in
the config, one reviewable line, instead of any path-like field going anywhere.

Not checked, by design: hub ids such as `bert-base-cased` and remote tracking URIs (they are not paths);
`model.name: default` and model folders inside the installed Python packages (site-packages), which belong to
the environment the pipeline already runs from, not to data a config could redirect; paths given on the
command line (`data add FILE`, `--run-dir`), which are the user's own choice; library caches (Hugging Face,
Prefect) located by environment variables. The check is done when the config is loaded, so a symlink changed
afterwards is not seen.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pipeline_lib.config import PACKAGED_MODELS, ConfigError, PipelineConfig

Mode = Literal["read", "write"]
REMOTE_WORDS = ("databricks", "databricks-uc", "uc")  # tracking URIs without a scheme that are not paths


class RootError(ConfigError):
    """A configured path resolves outside the allowed roots; the message names field, path and roots."""


@dataclass(frozen=True)
class PathUse:
    """One path the config makes the pipeline open: the field naming it, where it resolves, read or write."""

    field: str
    path: Path
    mode: Mode


@dataclass(frozen=True)
class Roots:
    """The resolved roots: `write` may be read and written, `read` only read."""

    read: tuple[Path, ...]
    write: tuple[Path, ...]

    def allows(self, path: Path, mode: Mode) -> bool:
        allowed = self.write if mode == "write" else (*self.read, *self.write)
        return any(path.is_relative_to(root) for root in allowed)

    def describe(self, mode: Mode) -> str:
        names = [f"write root {root}" for root in self.write]
        if mode == "read":
            names = [f"read root {root}" for root in self.read] + names
        return ", ".join(names) or "none"


def resolve(path: str | Path, base: Path) -> Path:
    """`path` as the pipeline opens it from `base`: made absolute, `..` and symlinks resolved."""
    return (base / Path(path)).resolve()


def roots_of(cfg: PipelineConfig, base: Path | None = None) -> Roots:
    """`paths.read_roots` and `paths.write_roots` resolved from `base` (the working directory)."""
    base = base or Path.cwd()
    problems = []
    resolved: dict[str, tuple[Path, ...]] = {}
    for kind, names in (("read", cfg.paths.read_roots), ("write", cfg.paths.write_roots)):
        resolved[kind] = tuple(resolve(name, base) for name in names)
        problems += [
            f"paths.{kind}_roots: {name!r} resolves to the filesystem root, which confines nothing; "
            "name the directories instead"
            for name, root in zip(names, resolved[kind], strict=True)
            if root == Path(root.anchor)
        ]
    if problems:
        raise RootError("\n".join(problems))
    return Roots(read=resolved["read"], write=resolved["write"])


def local_model_folder(name: str) -> Path | None:
    """The folder `model.name` names on this machine, or None for the packaged models (`default`, `mpnet-base`: in
    site-packages or the model cache) and hub ids (as `modeling` decides)."""
    if name in PACKAGED_MODELS:
        return None
    path = Path(name).expanduser()
    return path if path.exists() or name.startswith((".", "/", "~")) else None


def local_store(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (`sqlite:///x.db`, `file:///x`, a bare path); None if remote."""
    if uri in REMOTE_WORDS:
        return None
    scheme, sep, rest = uri.partition(":")
    if not sep or len(scheme) == 1:  # a bare path (or a Windows drive letter)
        return Path(uri)
    if scheme == "sqlite":
        path = unquote(rest[3:].split("?")[0]) if rest.startswith("///") else ""
        return Path(path) if path and path != ":memory:" else None
    if scheme == "file":
        return Path(unquote(urlparse(uri).path))
    return None


def config_paths(cfg: PipelineConfig, base: Path | None = None) -> list[PathUse]:
    """Every path the config names, resolved from `base`, with what the pipeline does with it."""
    base = base or Path.cwd()
    uses = [PathUse("data.path", resolve(cfg.data.path, base), "read")]
    uses += [
        PathUse(f"data.files.{split}", resolve(Path(cfg.data.path) / name, base), "read")
        for split, name in cfg.data.files.items()
    ]
    model = local_model_folder(cfg.model.name)
    if model is not None and not _in_installed_packages(resolve(model, base)):
        uses.append(PathUse("model.name", resolve(model, base), "read"))
    uses += [
        PathUse("paths.artifacts", resolve(cfg.paths.artifacts, base), "write"),
        PathUse("paths.store", resolve(cfg.paths.store, base), "write"),
    ]
    if cfg.paths.cache:
        uses.append(PathUse("paths.cache", resolve(cfg.paths.cache, base), "write"))
    if cfg.train.distill.unlabeled:
        uses.append(PathUse("train.distill.unlabeled", resolve(cfg.train.distill.unlabeled, base), "read"))
    store = local_store(cfg.registry.tracking_uri) if cfg.registry.tracking_uri else None
    if store is not None:
        uses.append(PathUse("registry.tracking_uri", resolve(store, base), "write"))
    if cfg.serve.log_path is not None:
        uses.append(PathUse("serve.log_path", resolve(cfg.serve.log_path, base), "write"))
    for name in ("output", "state_path"):  # `tunepipe trend`'s report folder and its record of sent alerts
        if getattr(cfg.trend, name) is not None:
            uses.append(PathUse(f"trend.{name}", resolve(getattr(cfg.trend, name), base), "write"))
    optuna = local_store(cfg.tune.storage) if cfg.tune.storage else None
    if optuna is not None:
        uses.append(PathUse("tune.storage", resolve(optuna, base), "write"))
    return uses


def confine(cfg: PipelineConfig, base: Path | None = None) -> None:
    """Refuse the config if any path it names resolves outside its roots (all offenders in one message)."""
    roots = roots_of(cfg, base)
    outside = [use for use in config_paths(cfg, base) if not roots.allows(use.path, use.mode)]
    if outside:
        raise RootError(
            "\n".join(["configuration names paths outside its roots:", *(_line(use, roots) for use in outside)])
        )


def check_write(path: str | Path, cfg: PipelineConfig, what: str, base: Path | None = None) -> Path:
    """`path` resolved, if the pipeline may write it under `cfg`'s write roots; else RootError naming `what`."""
    base = base or Path.cwd()
    roots, use = roots_of(cfg, base), PathUse(what, resolve(path, base), "write")
    if not roots.allows(use.path, "write"):
        raise RootError(_line(use, roots).strip())
    return use.path


def _line(use: PathUse, roots: Roots) -> str:
    verb = "writing" if use.mode == "write" else "reading"
    return (
        f"  {use.field}: {use.path} is outside the roots allowed for {verb} ({roots.describe(use.mode)}); "
        f"list its directory in paths.{use.mode}_roots if this is intended"
    )


def _in_installed_packages(path: Path) -> bool:
    """Inside the interpreter's site-packages (where the default model's wheel lives)."""
    dirs = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return any(path.is_relative_to(d) for d in dirs)
