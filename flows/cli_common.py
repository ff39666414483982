"""What every `tunepipe` command module shares: the default config, loading it (confined to its roots) and turning
expected failures into one red line and exit 1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from pipeline_lib.config import PipelineConfig, load_config

DEFAULT_CONFIG = Path("configs/default.yaml")


def config_paths(config: list[Path] | None) -> list[str] | None:
    """The config files, layered in order (the flows take them as strings); the default when none is given."""
    if config:
        return [str(path) for path in config]
    return [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else None


def load_cli_config(config: list[Path] | None, overrides: list[str] | None) -> PipelineConfig:
    """The config, refused if a path it names lies outside its roots (before anything is read or written)."""
    from pipeline_lib.roots import confine

    cfg = load_config(config_paths(config), overrides or [])
    confine(cfg)
    return cfg


# Expected failures, by module and class: imported only once one is raised, so that a light command (`predict`)
# never pays for the modules that define the others.
USER_ERRORS = (
    ("pipeline_lib.config", "ConfigError"),
    ("pipeline_lib.data.readers", "DataFormatError"),
    ("pipeline_lib.data.failures", "DataValidationError"),
    ("pipeline_lib.data.versions", "DataUnavailableError"),
    ("pipeline_lib.training.modeling", "ModelSourceError"),
    ("pipeline_lib.registry.errors", "RegistryError"),
    ("pipeline_lib.registry.promotion", "PromotionError"),
    ("pipeline_lib.commands.data_add", "DatasetError"),
    ("pipeline_lib.commands.reproduce", "ReproduceError"),
    ("pipeline_lib.serving.monitor", "MonitorError"),
    ("pipeline_lib.scoring.output", "ScoreError"),
    ("pipeline_lib.training.tuning", "TuneError"),
    ("pipeline_lib.training.weights", "WeightsError"),
    ("pipeline_lib.training.distill", "DistillError"),
    ("builtins", "FileNotFoundError"),
)


def is_user_error(exc: BaseException) -> bool:
    for module, name in USER_ERRORS:
        loaded = sys.modules.get(module)  # an error of a module that was never imported cannot have been raised
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures (bad config, bad data, unknown model) print their message and exit 1."""
    try:
        yield
    except Exception as exc:
        if not is_user_error(exc):
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
