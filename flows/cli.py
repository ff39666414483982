"""`tunepipe`: the command line. It parses arguments and calls the flow or one library step; no logic."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from pipeline_lib.config import ConfigError, PipelineConfig, load_config
from pipeline_lib.environment import apply_quiet_env

app = typer.Typer(help="Fine-tune, gate, export and register BERT-family text models.", no_args_is_help=True)
data_app = typer.Typer(help="Versioned datasets (DVC).", no_args_is_help=True)
config_app = typer.Typer(help="The resolved configuration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")

DEFAULT_CONFIG = Path("configs/default.yaml")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default: configs/default.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a field: --set train.epochs=3.")]

apply_quiet_env()


def _config_path(config: Path | None) -> Path | None:
    if config is not None:
        return config
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _load(config: Path | None, overrides: list[str] | None) -> PipelineConfig:
    return load_config(_config_path(config), overrides or [])


@contextmanager
def _user_errors() -> Iterator[None]:
    """Expected failures (bad config, bad data, unknown model) print their message and exit 1."""
    from pipeline_lib.data.readers import DataFormatError
    from pipeline_lib.modeling import ModelSourceError
    from pipeline_lib.registry import RegistryError
    from pipeline_lib.validation import DataValidationError
    from pipeline_lib.versioning import DataUnavailableError

    expected = (
        ConfigError,
        DataFormatError,
        DataValidationError,
        ModelSourceError,
        RegistryError,
        DataUnavailableError,
        FileNotFoundError,
    )
    try:
        yield
    except expected as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command()
def run(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Run the whole pipeline as a Prefect flow: validate, tokenize, train, evaluate, export, gate, register."""
    with _user_errors():
        _load(config, overrides)  # fail fast on a bad config, before Prefect starts
        from flows.retrain import retrain

        start = time.perf_counter()
        outcome = retrain(str(_config_path(config)) if _config_path(config) else None, overrides or [])
    gate, reg = outcome["gate"], outcome["registered"]
    typer.echo("\ngates:")
    for check in gate["checks"]:
        typer.echo(f"  {'PASS' if check['passed'] else 'FAIL'}  {check['name']:<28} {check['detail']}")
    verb = "promoted to champion" if reg["promoted"] else "kept as challenger"
    typer.secho(
        f"\n{reg['name']} v{reg['version']} {verb}: {reg['reason']} ({time.perf_counter() - start:.0f}s)",
        fg=typer.colors.GREEN if reg["promoted"] else typer.colors.YELLOW,
    )


@app.command()
def step(
    name: Annotated[str, typer.Argument(help="validate|tokenize|train|evaluate|export|gate|register")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run directory the steps share.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run one step alone, without Prefect (what the DVC stages call)."""
    from pipeline_lib.layout import RunDir
    from pipeline_lib.steps import run_step, summarize

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    with _user_errors():
        cfg = _load(config, overrides)
        start = time.perf_counter()
        result = run_step(name, cfg, RunDir(run_dir)).to_dict()
    typer.echo(f"[{name}] {time.perf_counter() - start:.1f}s  {summarize(name, result)}", err=True)
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Predict with a registered model's ONNX graph (onnxruntime); one JSON line per text."""
    from pipeline_lib import registry
    from pipeline_lib.inference import OnnxPredictor

    with _user_errors():
        cfg = _load(config, overrides)
        client = registry.connect(cfg)
        version = registry.resolve(client, registry.ModelRef.parse(model))
        predictor = OnnxPredictor.from_dir(registry.onnx_dir_for(cfg, client, version.name, version.version))
        for row in predictor.predict(texts):
            typer.echo(json.dumps({**row, "model": f"{version.name}/{version.version}"}))


@app.command()
def lineage(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Where a registered model came from: run, metrics, gates, git commit, data hashes, config."""
    from pipeline_lib.registration import lineage as model_lineage

    with _user_errors():
        info = model_lineage(_load(config, overrides), model)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(f"{info['name']} v{info['version']} aliases={info['aliases']} run={info['run_id']}")
    typer.echo(f"  git {info['git']['commit']} dirty={info['git']['dirty']}  config {info['config_hash']}")
    typer.echo(f"  data {info['data']['path']} md5={info['data']['md5']} splits={info['data']['splits']}")
    typer.echo("  metrics " + " ".join(f"{k}={v:.4f}" for k, v in sorted(info["metrics"].items()) if "." not in k))
    typer.echo(f"  promotion: {info['promotion']}")


@app.command()
def ledger(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Every promotion and refusal of a registered model, oldest first (JSON lines)."""
    from pipeline_lib import registry

    with _user_errors():
        client = registry.connect(_load(config, overrides))
        for record in registry.read_ledger(client, name):
            typer.echo(json.dumps(record, sort_keys=True))


@data_app.command("pull")
def data_pull(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Make the configured dataset present (DVC pull, or the packaged seed for the default data)."""
    from pipeline_lib.versioning import ensure_data

    with _user_errors():
        typer.echo(ensure_data(_load(config, overrides)))


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the resolved configuration as YAML (this is what `params.yaml` holds)."""
    with _user_errors():
        cfg = _load(config, overrides)
    sys.stdout.write(cfg.to_yaml())


if __name__ == "__main__":
    app()
