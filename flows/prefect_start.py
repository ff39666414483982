"""Prefect's ephemeral API, started before Prefect is imported, so that its start-up overlaps the command's own.

Without a Prefect server (`PREFECT_API_URL` unset), Prefect starts a temporary API server process the first time a
flow needs it: the flow then waits for that process to import the server, check its database and answer, several
seconds on every `tunepipe run`, after the process has imported Prefect, the flow and the server module itself.
`start_early` launches the same server (the same uvicorn command and environment as Prefect's `SubprocessASGIServer`)
once the config is checked and points `PREFECT_API_URL` at it; the command then imports the flow
and the steps' libraries while the server starts, and `EarlyServer.ready` waits for it to answer before the flow
runs. It is stopped when the process exits, after Prefect's own exit handlers (its log shipping) ran.

Nothing changes where Prefect would not start a temporary server (a server URL in the environment or the active
profile, ephemeral mode off) or where Prefect is already imported (its settings are read at import).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PORTS = range(8000, 9000)  # Prefect's own range for its temporary server
PORT_IN_USE = 3  # uvicorn's exit code when the port was taken meanwhile
DEFAULT_TIMEOUT_S = 90.0
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
            if healthy(self.api_url):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"Prefect's temporary API server did not answer within {self.timeout_s:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); or set PREFECT_API_URL to a running Prefect server"
        )

    def stop(self) -> None:
        """Stop the server (at exit) and give the environment its PREFECT_API_URL back."""
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
        self.port = port
        self.process = subprocess.Popen(server_command(port), env=server_env())
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


def start_early() -> EarlyServer | None:
    """Launch Prefect's temporary API server now and point PREFECT_API_URL at it (None where Prefect would not start
    one, or has read its settings already). Call `.ready()` before the first flow."""
    if not wanted():
        return None
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_S)
    server = EarlyServer(None, 0, timeout, previous_url=os.environ.get("PREFECT_API_URL"))
    server._launch(free_port())
    print(f"Starting temporary server on http://127.0.0.1:{server.port} (early)", file=sys.stderr, flush=True)
    atexit.register(server.stop)  # registered before Prefect's own exit handlers: runs after them
    return server
