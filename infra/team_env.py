"""The team stack's settings, read from one place: `infra/docker-compose.yml`.

`make team-up` and the integration tests (`tests/integration/team.py`) run the compose stack's PostgreSQL, MLflow
server, Prefect server and Prefect worker on one machine without Docker. Every environment variable and command
comes from the compose file; `Local` changes only what names the container network, the images or S3:

- the compose host names (`postgres:5432`, `mlflow:5000`, `prefect-server:4200`, `localhost:4200`) become
  127.0.0.1 on free ports, the bind address `0.0.0.0` becomes 127.0.0.1;
- the S3 artifact store (`s3://mlflow/`, MinIO) becomes a local folder that the MLflow server proxies the same way
  (`--serve-artifacts`: clients only ever talk HTTP to the server); the S3 client variables are dropped;
- the worker image's paths (`/opt/tunepipe`, `/var/cache/tunepipe`) become this checkout and a folder of the stack;
- what a container has by itself: its own `PREFECT_HOME`, and the Prefect server's port.

`unmapped` lists what of the compose file no rule covers; `tests/integration/test_team.py` fails on any, and
checks the running processes carry exactly what `render` gives, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

INFRA = Path(__file__).resolve().parent
COMPOSE = INFRA / "docker-compose.yml"
HOST = "127.0.0.1"
SERVERS = ("mlflow", "prefect-server", "prefect-worker")  # started from their compose command, in this order
NOT_LOCAL = ("minio", "buckets")  # S3: a local folder behind the MLflow server's artifact proxy instead
S3_CLIENT_ENV = frozenset(
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
)
POSTGRES_PORT = 5432  # the postgres image's
# what only makes sense inside the compose network or its images
COMPOSE_ONLY = re.compile(
    r"\b(?:postgres|mlflow|prefect-server|minio):\d+|\blocalhost:\d+|0\.0\.0\.0|s3://|/opt/tunepipe|/var/cache"
)
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin")
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?)-([^}]*))?\}|\$(\w+)")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: `${VAR}`, `$VAR`, `${VAR:-default}` (unset or empty), `${VAR-default}`
    (unset), `$$` for a literal `$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        value = env.get(name)
        if match.group(3) is not None and (value is None or (match.group(2) and value == "")):
            return match.group(3)
        return value or ""

    return _VARIABLE.sub(one, text)


def commands(command: str | list[str]) -> list[list[str]]:
    """A compose `command` as argument lists: a `/bin/sh -c "a && b"` script is its `&&` parts, in order."""
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["/bin/sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [list(command)]


def compose_port(service: dict[str, Any], default: int) -> int:
    """The container port a service publishes (`"5000:5000"` → 5000), else `default`."""
    published = service.get("ports") or [f"{default}:{default}"]
    return int(str(published[0]).rsplit(":", 1)[-1])


@dataclass(frozen=True)
class Service:
    """One compose service as run here: its commands (all but the last run to completion first) and the
    environment variables it sets."""

    name: str
    commands: list[list[str]]
    env: dict[str, str]

    @property
    def server(self) -> list[str]:
        return self.commands[-1]


@dataclass(frozen=True)
class Local:
    """Where the local stack runs: its folder, this checkout (the worker image's /opt/tunepipe), free ports."""

    root: Path
    repo: Path
    ports: Mapping[str, int]  # postgres, mlflow, prefect-server
    mlflow_workers: int | None = None  # `mlflow server --workers` (default 4); fewer on a small machine
    spec: dict[str, Any] = field(default_factory=compose, repr=False)

    @property
    def artifacts(self) -> Path:
        """The MLflow server's artifact store (`--artifacts-destination`), the local stand-in for s3://mlflow/."""
        return self.root / "mlflow-artifacts"

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"

    def replacements(self) -> list[tuple[str, str]]:
        services = self.spec["services"]
        out = [("0.0.0.0", HOST)]
        for name, default in (("postgres", POSTGRES_PORT), ("mlflow", 5000), ("prefect-server", 4200)):
            inside, here = compose_port(services[name], default), f"{HOST}:{self.ports[name]}"
            out += [(f"{name}:{inside}", here), (f"localhost:{inside}", here)]
        out += [(f"--port={compose_port(services['mlflow'], 5000)}", f"--port={self.ports['mlflow']}")]
        destination = next(a for a in services["mlflow"]["command"] if a.startswith("--artifacts-destination="))
        out += [(destination.split("=", 1)[1], str(self.artifacts))]
        return [*out, ("/opt/tunepipe", str(self.repo)), ("/var/cache/tunepipe", str(self.root / "cache"))]

    def translate(self, text: str) -> str:
        for compose_value, local_value in self.replacements():
            text = text.replace(compose_value, local_value)
        return text

    def additions(self, name: str) -> dict[str, str]:
        """What a container has without the compose file saying so: its own home, the server's port."""
        home = {"PREFECT_HOME": str(self.root / f"{name}-home")} if name.startswith("prefect") else {}
        if name == "prefect-server":
            home["PREFECT_SERVER_API_PORT"] = str(self.ports[name])
        return home


def render(local: Local, env: Mapping[str, str]) -> dict[str, Service]:
    """The compose stack's MLflow server, Prefect server and worker as run here: compose's commands and
    environment, `${...}` taken from `env`, translated by `local`."""
    services = local.spec["services"]
    out = {}
    for name in SERVERS:
        spec = services[name]
        environment = {
            key: local.translate(interpolate(str(value), env))
            for key, value in (spec.get("environment") or {}).items()
            if key not in S3_CLIENT_ENV
        }
        argv = [[local.translate(interpolate(arg, env)) for arg in cmd] for cmd in commands(spec["command"])]
        if name == "mlflow" and local.mlflow_workers:
            argv[-1] = [*argv[-1], f"--workers={local.mlflow_workers}"]
        out[name] = Service(name, argv, environment | local.additions(name))
    return out


@dataclass(frozen=True)
class Postgres:
    """The postgres service: its superuser and password, the database the image creates, and the init script
    the image runs in it (creating the others)."""

    user: str
    password: str
    database: str
    init_sql: Path

    def databases(self) -> list[str]:
        created = re.findall(r"CREATE DATABASE\s+\"?(\w+)", self.init_sql.read_text(), re.I)
        return [self.database, *created]


def postgres(env: Mapping[str, str], spec: dict[str, Any] | None = None) -> Postgres:
    service = (spec or compose())["services"]["postgres"]
    values = {key: interpolate(str(value), env) for key, value in service["environment"].items()}
    mounted = next(v.split(":")[0] for v in service["volumes"] if "docker-entrypoint-initdb.d" in v)
    return Postgres(values["POSTGRES_USER"], values["POSTGRES_PASSWORD"], values["POSTGRES_DB"], INFRA / mounted)


def unmapped(services: Mapping[str, Service]) -> list[str]:
    """Rendered values that still name the compose network, an image path or S3 (no rule translated them)."""
    values = [(f"{s.name} env {k}", v) for s in services.values() for k, v in s.env.items()]
    values += [(f"{s.name} command", " ".join(cmd)) for s in services.values() for cmd in s.commands]
    return [f"{where}: {value}" for where, value in values if COMPOSE_ONLY.search(value)]


def postgres_bin() -> Path | None:
    """The folder of the PostgreSQL server programs (initdb, postgres, pg_ctl): on PATH, else the newest of
    the usual install locations; None when there are none."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres") and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    folders = [Path(p) for pattern in PG_BIN_GLOBS for p in sorted(Path("/").glob(pattern.lstrip("/")))]
    found = [f for f in folders if all((f / tool).is_file() for tool in ("initdb", "postgres", "pg_ctl", "psql"))]
    return max(found, key=_version, default=None)


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(folder))) or (0,)


def user_env(repo: Path) -> dict[str, str]:
    """The variables compose would read: `infra/.env` (if any), overridden by the environment."""
    env_file = repo / "infra" / ".env"
    values: dict[str, str] = {}
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#"):
                values[key.strip()] = value.strip().strip("'\"")
    return {**values, **os.environ}
