"""Prefect's ephemeral API, started before Prefect is imported, so that its start-up overlaps the command's own.

Without a Prefect server (`PREFECT_API_URL` unset), Prefect starts a temporary API server process the first time a
flow needs it: the flow then waits for that process to import the server, check its database and answer, several
seconds on every `tunepipe run`, after the process has imported Prefect, the flow and the server module itself.
`start_early` launches the same server (the same uvicorn command and environment as Prefect's `SubprocessASGIServer`)
once the config is checked and points `PREFECT_API_URL` at it; the command then imports the flow
and the steps' libraries while the server starts, and `EarlyServer.ready` waits for it to answer before the flow
runs. It is stopped when the process exits, after Prefect's own exit handlers (its log shipping) ran.

The server is kept for the next command (`flows.prefect_keeper`): launched detached, recorded in
`PREFECT_HOME/tunepipe-api.json` with the settings it runs with, and used by the next command on the same PREFECT_HOME
and settings instead of a new one (`TUNEPIPE_PREFECT_KEEP_S` seconds after its last command, default 900; 0 keeps
nothing and the server stops with its command).

Nothing changes where Prefect would not start a temporary server (a server URL in the environment or the active
profile, ephemeral mode off) or where Prefect is already imported (its settings are read at import).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flows.prefect_keeper import PORT_IN_USE, pid_alive

PORTS = range(8000, 9000)  # Prefect's own range for its temporary server
DEFAULT_TIMEOUT_S = 90.0
DEFAULT_KEEP_S = 900.0  # how long a kept server waits for the next command (TUNEPIPE_PREFECT_KEEP_S)
STATE_FILE = "tunepipe-api.json"
LEASES_DIR = "tunepipe-api-leases"
# what `tunepipe run` imports anyway (validate's Great Expectations, the training stack), imported while the server
# starts rather than after it (a run that `decide` skips pays them for nothing, within the server's start-up)
RUN_PRELOAD = ("great_expectations", "torch", "transformers")


@dataclass
class EarlyServer:
    """A Prefect API server process started early; `ready()` before the first flow, stopped at exit."""

    process: subprocess.Popen | None
    port: int
    timeout_s: float
    previous_url: str | None = None
    log: list[str] = field(default_factory=list)
    home: Path | None = None  # set for a kept server: its PREFECT_HOME (record, leases)
    keep_s: float = 0.0
    pid: int | None = None  # a kept server found running (started by an earlier command)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self, preload: tuple[str, ...] = ()) -> None:
        """Import `preload` (modules the run needs anyway) while the server starts, then wait until it answers."""
        for name in preload:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else None
            if code == PORT_IN_USE:  # the port was taken between the check and the bind: another one, as Prefect does
                self._launch(free_port())
                continue
            if code is not None:
                raise RuntimeError(f"Prefect's temporary API server exited with code {code} before answering")
            if self.process is None and self.pid is not None and not pid_alive(self.pid):  # the kept one stopped
                self._launch(free_port())
                continue
            if healthy(self.api_url):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"Prefect's temporary API server did not answer within {self.timeout_s:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); or set PREFECT_API_URL to a running Prefect server"
        )

    def stop(self) -> None:
        """Stop the server (at exit; a kept one only gives its lease back) and give the environment its
        PREFECT_API_URL back."""
        if self.home is not None:
            (self.home / LEASES_DIR / str(os.getpid())).unlink(missing_ok=True)
            self.process = None  # the kept server goes on without this command
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if os.environ.get("PREFECT_API_URL") == self.api_url:
            if self.previous_url is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = self.previous_url

    def _launch(self, port: int) -> None:
        self.port, self.pid = port, None
        if self.home is None:
            self.process = subprocess.Popen(server_command(port), env=server_env())
        else:
            self.process = launch_kept(self.home, port, self.keep_s)
        os.environ["PREFECT_API_URL"] = self.api_url


def server_command(port: int) -> list[str]:
    """Prefect's own command for its temporary server (`SubprocessASGIServer`), on `port`."""
    package = prefect_package()
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(package.parent if package else Path()),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def keeper_command(port: int, keep_s: float, state: Path) -> list[str]:
    """`flows.prefect_keeper` serving Prefect's API on `port`, stopping after `keep_s` idle seconds."""
    script = str(Path(__file__).with_name("prefect_keeper.py"))  # run as a file: nothing else of tunepipe imported
    return [sys.executable, script, "--port", str(port), "--idle", str(keep_s), "--state", str(state)]


def server_env() -> dict[str, str]:
    """The environment Prefect gives its temporary server: no UI, ephemeral services only."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    """A port of Prefect's range that nothing listens on now."""
    for _ in range(50):
        port = random.choice(PORTS)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port for Prefect's temporary API server in {PORTS.start}-{PORTS.stop - 1}")


def prefect_package() -> Path | None:
    """The installed prefect package's folder, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    return Path(spec.origin).parent if spec and spec.origin else None


def _read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        import tomllib  # Python 3.11+

        loads = tomllib.loads
    except ModuleNotFoundError:  # Python 3.10: Prefect's own toml dependency
        import toml

        loads = toml.loads
    try:
        return loads(text)
    except ValueError:  # both libraries' decode errors
        return {}


def profile_settings(environ: dict[str, str], package: Path | None) -> dict[str, str]:
    """The active Prefect profile's settings: Prefect's default profiles with the user's (PREFECT_HOME/profiles.toml)
    over them; the active one named by PREFECT_PROFILE, else the user's file, else Prefect's default."""
    defaults = _read_toml(package / "settings" / "profiles.toml") if package else {}
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    user = _read_toml(Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser())
    active = environ.get("PREFECT_PROFILE") or user.get("active") or defaults.get("active") or "ephemeral"
    merged = dict(defaults.get("profiles", {}).get(active) or {})
    merged.update(user.get("profiles", {}).get(active) or {})
    return {key: str(value) for key, value in merged.items()}


def local_settings_files(cwd: Path) -> bool:
    """Whether the working directory has Prefect settings files (prefect.toml, pyproject's [tool.prefect], a .env
    naming PREFECT_ settings): Prefect reads them, this module does not, so it leaves the start to Prefect."""
    pyproject = cwd / "pyproject.toml"
    env_file = cwd / ".env"
    return (
        (cwd / "prefect.toml").is_file()
        or (pyproject.is_file() and "[tool.prefect" in pyproject.read_text(encoding="utf-8", errors="replace"))
        or (env_file.is_file() and "PREFECT_" in env_file.read_text(encoding="utf-8", errors="replace"))
    )


def _on(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def wanted(environ: dict[str, str] | None = None, cwd: Path | None = None) -> bool:
    """Whether Prefect would start a temporary server in this process and has not read its settings yet."""
    if "prefect" in sys.modules:
        return False
    return would_start_server(dict(os.environ) if environ is None else environ, cwd or Path.cwd(), prefect_package())


def would_start_server(environ: dict[str, str], cwd: Path, package: Path | None) -> bool:
    """Whether Prefect, with `environ` in `cwd`, would start a temporary server: no API URL in the environment or the
    active profile, no settings file in `cwd` this module does not read, ephemeral mode on (environment, else the
    profile; Prefect's default is off, its default profile turns it on); TUNEPIPE_EARLY_PREFECT_SERVER=0 opts out."""
    if package is None or _on(environ.get("TUNEPIPE_EARLY_PREFECT_SERVER", "1")) is False:
        return False
    if environ.get("PREFECT_API_URL") or local_settings_files(cwd):
        return False
    profile = profile_settings(environ, package)
    if profile.get("PREFECT_API_URL"):
        return False
    names = ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")
    for source in (environ, profile):
        for name in names:
            if _on(source.get(name)) is not None:
                return bool(_on(source.get(name)))
    return False


def prefect_home(environ: dict[str, str] | None = None) -> Path:
    environ = dict(os.environ) if environ is None else environ
    return Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser().resolve()


def keep_seconds(environ: dict[str, str] | None = None) -> float:
    """How long a server waits for the next command after its last one (TUNEPIPE_PREFECT_KEEP_S; 0: not kept)."""
    value = (os.environ if environ is None else environ).get("TUNEPIPE_PREFECT_KEEP_S")
    try:
        return max(0.0, float(value)) if value not in (None, "") else DEFAULT_KEEP_S
    except ValueError:
        raise ValueError(f"TUNEPIPE_PREFECT_KEEP_S={value!r}: expected seconds (a number; 0 keeps no server)") from None


def server_identity(environ: dict[str, str] | None = None) -> dict[str, str]:
    """What a kept server must share with a command to serve it: the Python environment (`sys.prefix`: `python` and
    `python3` of one venv are one) and Prefect it runs, and every Prefect
    setting of the environment (its database, its home), except the API URL the command is pointed at."""
    from importlib.metadata import version

    environ = dict(os.environ) if environ is None else environ
    settings = {k: v for k, v in sorted(environ.items()) if k.startswith("PREFECT_") and k != "PREFECT_API_URL"}
    return {"python": sys.prefix, "prefect": version("prefect"), **settings}  # the environment, not its symlink


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """One command at a time finds or launches the kept server of `home`."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "tunepipe-api.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record(home: Path) -> dict | None:
    try:
        return json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def launch_kept(home: Path, port: int, keep_s: float) -> subprocess.Popen:
    """Launch the kept server detached (its own session, output to PREFECT_HOME/tunepipe-api.log) and record it."""
    state = home / STATE_FILE
    with open(home / "tunepipe-api.log", "ab") as log:
        process = subprocess.Popen(
            keeper_command(port, keep_s, state),
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not stopped by the command's Ctrl-C or its terminal closing
            cwd=home,
        )
    record = {"pid": process.pid, "port": port, "keep_s": keep_s, "identity": server_identity(), "since": time.time()}
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(state)
    return process


def take_lease(home: Path) -> None:
    leases = home / LEASES_DIR
    leases.mkdir(parents=True, exist_ok=True)
    (leases / str(os.getpid())).touch()


def stop_kept(home: Path | None = None, timeout_s: float = 10.0) -> int | None:
    """Stop the kept server of `home` (default: this environment's PREFECT_HOME) now; its pid, or None if none ran."""
    home = home or prefect_home()
    record = read_record(home)
    if not record or not pid_alive(int(record["pid"])):
        (home / STATE_FILE).unlink(missing_ok=True)
        return None
    pid = int(record["pid"])
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it where this process launched it
        time.sleep(0.05)
    (home / STATE_FILE).unlink(missing_ok=True)
    return pid


def kept_server() -> dict | None:
    """The record of this environment's kept server, when one is running: pid, port, seconds kept, since."""
    record = read_record(prefect_home())
    return record if record and pid_alive(int(record["pid"])) else None


def start_early() -> EarlyServer | None:
    """Point PREFECT_API_URL at a Prefect API server for this command (None where Prefect would not start one, or has
    read its settings already): the kept one of an earlier command with the same settings, else one launched now (kept
    for the next command unless TUNEPIPE_PREFECT_KEEP_S=0). Call `.ready()` before the first flow."""
    if not wanted():
        return None
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_S)
    keep_s = keep_seconds()
    server = EarlyServer(None, 0, timeout, previous_url=os.environ.get("PREFECT_API_URL"))
    home = prefect_home()
    with home_lock(home):
        record = read_record(home)
        running = bool(record) and pid_alive(int(record["pid"]))
        if running and record.get("identity") == server_identity():
            server.home, server.keep_s = home, keep_s
            server.port, server.pid = int(record["port"]), int(record["pid"])
            os.environ["PREFECT_API_URL"] = server.api_url
            take_lease(home)
            message = f"Using the kept Prefect API on http://127.0.0.1:{server.port} (pid {server.pid})"
        elif keep_s > 0 and not running:
            server.home, server.keep_s = home, keep_s
            server._launch(free_port())
            take_lease(home)
            message = (
                f"Starting temporary server on http://127.0.0.1:{server.port} (early; kept {keep_s:.0f} s for the "
                "next command: TUNEPIPE_PREFECT_KEEP_S)"
            )
        else:  # not kept, or another Python, Prefect or settings keeps one here: a server of this command's own
            server._launch(free_port())
            message = f"Starting temporary server on http://127.0.0.1:{server.port} (early)"
    print(message, file=sys.stderr, flush=True)
    atexit.register(server.stop)  # registered before Prefect's own exit handlers: runs after them
    return server
