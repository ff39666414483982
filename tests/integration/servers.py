"""Real servers for integration tests: free ports on 127.0.0.1, started as child processes in their own
process group, waited on until healthy, and always stopped (the group, by its id) on the way out."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = str(Path(sys.executable).parent)
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's executables first on PATH and no inherited server URLs."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def as_user(user: str | None) -> dict:
    """subprocess keyword arguments that run a command as `user`, its group and no other (None: as this process)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


@contextmanager
def child(
    args: list[str], log: Path, env: dict[str, str], cwd: Path | None = None, user: str | None = None
) -> Iterator[subprocess.Popen]:
    """Run `args` in a new session (as `user` and its group, when given); on exit SIGTERM its process group, then
    SIGKILL after 20 s."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **as_user(user)
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after 20 s (a no-op once it has exited)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def prefect_server(home: Path, log: Path) -> Iterator[str]:
    """`prefect server start` on a free port with its own PREFECT_HOME (sqlite); yields the API URL."""
    port = free_port()
    env = child_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    args = [f"{BIN}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with child(args, log, env) as proc:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(f"{url}/health", proc, log)
        yield url


@contextmanager
def mlflow_process(root: Path, log: Path, port: int) -> Iterator[subprocess.Popen]:
    """`mlflow server` on `port` with a sqlite backend and a local artifact root under `root`, once healthy
    (`stop` it early to take it away mid-run; start another on the same root and port to bring it back)."""
    root.mkdir(parents=True, exist_ok=True)
    args = [
        f"{BIN}/mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # no GenAI job runners: seven huey processes of about 250 MB each that tunepipe never uses (as in infra/)
    env = child_env(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with child(args, log, env) as proc:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, log, timeout=120)
        yield proc


@contextmanager
def mlflow_server(root: Path, log: Path) -> Iterator[str]:
    """`mlflow server` with a sqlite backend and a local artifact root; yields the tracking URI."""
    port = free_port()
    with mlflow_process(root, log, port):
        yield f"http://127.0.0.1:{port}"


def call(url: str, payload: dict | None = None) -> tuple[int, dict]:
    """GET `url` (or POST `payload` as JSON); the status and the JSON body, errors included."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextmanager
def tunepipe_serve(cwd: Path, model: str, options: list[str], log: Path) -> Iterator[str]:
    """`tunepipe serve --model MODEL` (this checkout's code) on a free port in `cwd`; yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "flows.cli", "serve", "--model", model, "--port", str(port), *options]
    with child(args, log, child_env(PYTHONPATH=str(REPO)), cwd=cwd) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(f"{base}/health", proc, log, timeout=120)
        yield base


def wait_for_log(folder: Path, done: Callable[[Any], bool], timeout: float = 20) -> Any:
    """The prediction log under `folder` once `done(log)` holds (a server writes it every half second)."""
    from pipeline_lib.serving.prediction_log import read_log

    deadline = time.monotonic() + timeout
    while not done(log := read_log(folder)):
        assert time.monotonic() < deadline, f"the prediction log never got there: {len(log)} records"
        time.sleep(0.3)
    return log


@contextmanager
def json_receiver() -> Iterator[tuple[str, list[dict], dict[str, int]]]:
    """A webhook receiver on 127.0.0.1 in a thread: (its URL, the JSON bodies posted to it, {"status": the HTTP
    status it answers, 200 unless changed})."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[dict] = []
    answer = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(answer["status"])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", bodies, answer
    finally:
        server.shutdown()
        server.server_close()
