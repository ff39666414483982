"""`make team-up` / `make team-down`: the team stack of `infra/docker-compose.yml` on this machine, without Docker.

    make team-up                  # PostgreSQL, MLflow server, Prefect server, pool tunepipe-process, one worker
    source .tunepipe/team/env     # MLFLOW_TRACKING_URI, PREFECT_API_URL, TUNEPIPE_OPTUNA_STORAGE, TUNEPIPE_GIT_URL
    make team-down                # stops it all and deletes the stack's databases and artifacts

`up` starts `serve` in the background and waits until the stack answers; `serve` runs it with the code the
team-mode tests run (`tests/integration/team.py`) until `down` sends it SIGTERM. Compose's `${...}` come from
`infra/.env` and the environment; TUNEPIPE_GIT_URL defaults to this checkout. `TEAM_DIR` moves the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = Path(os.environ.get("TEAM_DIR", REPO / ".tunepipe" / "team"))
START_TIMEOUT_S = 300


def serve(folder: Path) -> None:
    from infra.team_env import user_env
    from tests.integration.team import team_stack

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = user_env(REPO)
    env["TUNEPIPE_GIT_URL"] = env.get("TUNEPIPE_GIT_URL") or str(REPO)
    exports = folder / "env"
    try:
        with team_stack(folder / "stack", env) as stack:
            urls = {"MLFLOW_TRACKING_URI": stack.mlflow_url, "PREFECT_API_URL": stack.prefect_url}
            urls["TUNEPIPE_OPTUNA_STORAGE"] = stack.services["prefect-worker"].env["TUNEPIPE_OPTUNA_STORAGE"]
            lines = [f"export {k}={v}" for k, v in {**urls, "TUNEPIPE_GIT_URL": env["TUNEPIPE_GIT_URL"]}.items()]
            staging = exports.with_suffix(".tmp")
            staging.write_text("\n".join(lines) + "\n")
            staging.replace(exports)
            print(f"team stack up in {folder / 'stack'}", flush=True)
            while True:
                signal.pause()
    finally:
        exports.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(folder: Path) -> int | None:
    pid_file = folder / "serve.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    return pid if _alive(pid) else None


def up(folder: Path) -> int:
    exports, log = folder / "env", folder / "team.log"
    if _pid(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infra.team", "serve", "--dir", str(folder)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (folder / "serve.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not exports.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                print(log.read_text()[-4000:], file=sys.stderr)
                down(folder)
                print(f"the team stack did not start (log: {log})", file=sys.stderr)
                return 1
            time.sleep(1)
    print(exports.read_text() + f"# source {exports}   (stop: make team-down; logs: {folder / 'stack'}/*.log)")
    return 0


def down(folder: Path) -> int:
    pid = _pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # the stack stops its processes in reverse order and removes its cluster
        deadline = time.monotonic() + 120
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)
    print("team stack stopped" if pid else "no team stack running", f"({folder} removed)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "serve"])
    parser.add_argument("--dir", type=Path, default=FOLDER, help="the stack's folder (default: .tunepipe/team)")
    args = parser.parse_args()
    folder = args.dir.resolve()
    if args.command == "serve":
        serve(folder)
        return 0
    return up(folder) if args.command == "up" else down(folder)


if __name__ == "__main__":
    sys.exit(main())
