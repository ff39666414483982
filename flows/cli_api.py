"""`tunepipe api status|stop`: the Prefect API server tunepipe keeps for the next command (`flows.prefect_keeper`)."""

from __future__ import annotations

import time

import typer

from flows import prefect_start

api_app = typer.Typer(
    help="The Prefect API server kept between commands (TUNEPIPE_PREFECT_KEEP_S).", no_args_is_help=True
)


@api_app.command("status")
def status() -> None:
    """Show the kept Prefect API server of this PREFECT_HOME, if one runs (exit 1 when none)."""
    record = prefect_start.kept_server()
    home = prefect_start.prefect_home()
    if record is None:
        typer.echo(f"no kept Prefect API server for {home}: the next command starts one")
        raise typer.Exit(1)
    age = time.time() - float(record.get("since", time.time()))
    typer.echo(
        f"kept Prefect API on http://127.0.0.1:{record['port']}/api (pid {record['pid']}, up {age:.0f} s, stops "
        f"{float(record['keep_s']):.0f} s after its last command) for {home}"
    )


@api_app.command("stop")
def stop() -> None:
    """Stop the kept Prefect API server now (the next command starts a new one)."""
    pid = prefect_start.stop_kept()
    typer.echo(f"stopped the kept Prefect API server (pid {pid})" if pid else "no kept Prefect API server was running")
