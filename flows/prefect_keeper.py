"""The kept Prefect API: the temporary server `tunepipe` starts, kept for the next command instead of started again.

Prefect without a server starts a temporary API process for every command that runs a flow (about 8 s on 2 cores:
importing the server, checking its database), and stops it at exit. A team that retrains several times a day pays
that on every run. `flows.prefect_start` instead launches this module, detached, once: it serves Prefect's API on
127.0.0.1 (the same app, database and settings as Prefect's temporary server) and records itself in
`PREFECT_HOME/tunepipe-api.json`; the next command on the same PREFECT_HOME and settings finds it there and uses it.

It stops itself when no command has used it for `--idle` seconds (`TUNEPIPE_PREFECT_KEEP_S`, default 900; 0
keeps nothing: the server stops when its command exits, as Prefect's own does). A command holds a lease while it
runs (`leases/<pid>`, removed at exit; a lease of a process that died is dropped), so a long training never loses its
API. It also stops when its PREFECT_HOME is removed or another server replaced its record; `tunepipe api stop` stops
it now.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from pathlib import Path

WATCH_EVERY_S = 1.0
PORT_IN_USE = 3  # uvicorn's exit code for a server that could not start (`uvicorn.main`)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def live_leases(leases: Path) -> list[int]:
    """The pids holding a lease that are still running; leases of dead processes are removed."""
    alive = []
    for lease in leases.glob("*") if leases.is_dir() else ():
        try:
            pid = int(lease.name)
        except ValueError:
            continue
        if pid_alive(pid):
            alive.append(pid)
        else:
            lease.unlink(missing_ok=True)
    return alive


def still_recorded(state: Path) -> bool:
    """Whether the record still names this process (not removed with its PREFECT_HOME, not replaced)."""
    try:
        return json.loads(state.read_text(encoding="utf-8")).get("pid") == os.getpid()
    except (OSError, ValueError):
        return False


def watch(server: object, state: Path, leases: Path, idle_s: float) -> None:
    """Ask uvicorn to exit once no lease has been held for `idle_s` seconds, or the record is gone."""
    last_used = time.monotonic()
    while not getattr(server, "should_exit", False):
        time.sleep(WATCH_EVERY_S)
        if live_leases(leases):
            last_used = time.monotonic()
        if not still_recorded(state) or time.monotonic() - last_used > idle_s:
            server.should_exit = True  # type: ignore[attr-defined]


def serve(port: int, idle_s: float, state: Path) -> None:
    """Prefect's API app under uvicorn on 127.0.0.1:`port`, watched for idleness; the record removed at exit."""
    import uvicorn

    leases = state.parent / "tunepipe-api-leases"
    config = uvicorn.Config(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=watch, args=(server, state, leases, idle_s), daemon=True).start()
    try:
        server.run()
    finally:
        if still_recorded(state):
            with contextlib.suppress(OSError):
                state.unlink()
    if not server.started:  # the port was taken meanwhile: uvicorn's own exit code for it, the caller picks another
        raise SystemExit(PORT_IN_USE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=float, required=True, help="seconds without a lease before it stops")
    parser.add_argument("--state", type=Path, required=True, help="the record this server keeps (tunepipe-api.json)")
    args = parser.parse_args()
    serve(args.port, args.idle, args.state)


if __name__ == "__main__":
    main()
