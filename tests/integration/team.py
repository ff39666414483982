"""The team stack of `infra/docker-compose.yml` on one machine without Docker, as the team-mode tests and
`make team-up` run it: a PostgreSQL cluster (initdb in its own temporary folder, a free port on 127.0.0.1), the
MLflow server on it with artifacts proxied to a local folder, the Prefect server on it, the process work pool and
one worker. Commands and environment come from the compose file through `infra/team_env.py`; the processes are
`servers.py` children, stopped in reverse order on the way out, and the cluster's folder is removed."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra import team_env

from .servers import as_user, child, child_env, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]


def postgres_user() -> str | None:
    """Who runs PostgreSQL: this process's user, or, as root (initdb and postgres refuse root), `postgres`, else
    `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    raise RuntimeError("running as root, and no `postgres` or `nobody` user exists to run PostgreSQL as")


class Cluster:
    """A PostgreSQL cluster in a temporary folder of its own (owned by the user that runs it), its postmaster a
    foreground child on 127.0.0.1:`port`. `stop` (pg_ctl's fast shutdown) and `start` take it away and bring it
    back on the same port with the same data."""

    def __init__(self, bin_dir: Path, port: int, logs: Path):
        self.bin, self.port, self.logs, self.user = bin_dir, port, logs, postgres_user()
        self.folder = Path(tempfile.mkdtemp(prefix="tunepipe-pg-"))
        self.data = self.folder / "data"
        self._own(self.folder)
        self.proc: subprocess.Popen | None = None
        self._child: contextlib.AbstractContextManager | None = None
        self.starts = 0

    def _own(self, path: Path) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _as_owner(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / tool), *args], capture_output=True, text=True, env=child_env(), **as_user(self.user)
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

    def create(self, settings: team_env.Postgres) -> None:
        """initdb (the superuser and password of the postgres service, password auth over TCP), start, then what
        the postgres image does on first start: create POSTGRES_DB and run the init script in it."""
        pwfile = self.folder / "pwfile"
        pwfile.write_text(settings.password + "\n")
        self._own(pwfile)
        try:
            self._as_owner(
                "initdb",
                f"--pgdata={self.data}",
                f"--username={settings.user}",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            )
        finally:
            pwfile.unlink()
        self.start()
        self.psql(settings, "postgres", "-c", f'CREATE DATABASE "{settings.database}"')
        self.psql(settings, settings.database, "-f", str(settings.init_sql))

    def psql(self, settings: team_env.Postgres, database: str, *args: str) -> str:
        """psql over TCP with the service's user and password; its output (unaligned, tuples only)."""
        command = [str(self.bin / "psql"), "-h", team_env.HOST, "-p", str(self.port), "-U", settings.user]
        command += ["-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(PGPASSWORD=settings.password))
        if done.returncode != 0:
            raise RuntimeError(f"psql {' '.join(args)}:\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"postgres-{self.starts}.log"
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder)]
        self._child = child([*args, "-c", f"listen_addresses={team_env.HOST}"], log, child_env(), user=self.user)
        self.proc = self._child.__enter__()
        deadline = time.monotonic() + 60
        ready = [str(self.bin / "pg_isready"), "-q", "-h", team_env.HOST, "-p", str(self.port)]
        while subprocess.run(ready).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: sessions are ended, the postmaster checkpoints and exits."""
        if self.running:
            self._as_owner("pg_ctl", f"--pgdata={self.data}", "stop", "--mode=fast", "--wait", "--timeout=60")
        if self._child is not None:
            self._child.__exit__(None, None, None)  # reaps it (SIGTERM, then SIGKILL, if it is still there)
            self._child = None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def prefect_client(api: str):
    """A synchronous Prefect client on `api`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        return get_client(sync_client=True)


@dataclass
class TeamStack:
    local: team_env.Local
    services: dict[str, team_env.Service]
    settings: team_env.Postgres
    postgres: Cluster
    procs: dict[str, subprocess.Popen]

    @property
    def mlflow_url(self) -> str:
        """MLFLOW_TRACKING_URI, as the compose worker has it: runs, registry and (proxied) artifacts."""
        return self.services["prefect-worker"].env["MLFLOW_TRACKING_URI"]

    @property
    def prefect_url(self) -> str:
        """PREFECT_API_URL, as the compose worker has it: deployments, flow runs, work pools, logs."""
        return self.services["prefect-worker"].env["PREFECT_API_URL"]

    @property
    def pool(self) -> str:
        worker = self.services["prefect-worker"].server
        return worker[worker.index("--pool") + 1]

    def client_env(self, **extra: str) -> dict[str, str]:
        """A team member's environment: the two URLs, nothing else of the stack."""
        return child_env(MLFLOW_TRACKING_URI=self.mlflow_url, PREFECT_API_URL=self.prefect_url, **extra)

    def log(self, name: str) -> Path:
        return self.local.root / f"{name}.log"

    def sql(self, database: str, query: str) -> list[list[str]]:
        """Rows of a query on one of the stack's databases (what the servers stored, read beside them)."""
        out = self.postgres.psql(self.settings, database, "-F", "\t", "-c", query)
        return [line.split("\t") for line in out.splitlines() if line]


@contextmanager
def team_stack(
    root: Path, env: Mapping[str, str], *, mlflow_workers: int | None = None, worker_env: Mapping[str, str] = {}
) -> Iterator[TeamStack]:
    """Start the stack under `root` with compose's `${...}` taken from `env`; `worker_env` adds to the worker's
    environment (e.g. how often it polls)."""
    bin_dir = team_env.postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server programs (initdb, postgres, pg_ctl) not found")
    root.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("postgres", "mlflow", "prefect-server")}
    local = team_env.Local(root.resolve(), REPO, ports, mlflow_workers)
    services = team_env.render(local, env)
    settings = team_env.postgres(env, local.spec)
    with ExitStack() as stack:
        cluster = Cluster(bin_dir, ports["postgres"], local.root)
        stack.callback(cluster.remove)
        stack.callback(cluster.stop)
        cluster.create(settings)
        procs = {}
        for name in ("mlflow", "prefect-server"):
            spec = services[name]
            procs[name] = stack.enter_context(child(spec.server, local.root / f"{name}.log", child_env(**spec.env)))
        wait_healthy(f"{local.url('mlflow')}/health", procs["mlflow"], local.root / "mlflow.log", timeout=240)
        log = local.root / "prefect-server.log"
        wait_healthy(f"{local.url('prefect-server')}/api/health", procs["prefect-server"], log, timeout=240)
        worker = services["prefect-worker"]
        environment = child_env(**worker.env, **worker_env)
        for command in worker.commands[:-1]:  # the work pool, from infra/work-pool-template.json
            done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=local.root)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}")
        log = local.root / "prefect-worker.log"
        procs["prefect-worker"] = stack.enter_context(child(worker.server, log, environment, cwd=local.root))
        team = TeamStack(local, services, settings, cluster, procs)
        wait_for_worker(team, log)
        yield team


def wait_for_worker(team: TeamStack, log: Path, timeout: float = 120) -> None:
    """Until the worker has registered with its pool on the Prefect server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if team.procs["prefect-worker"].poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log.read_text()[-3000:]}")
        with prefect_client(team.prefect_url) as client:
            if client.read_workers_for_work_pool(team.pool):
                return
        time.sleep(1)
    raise TimeoutError(f"no worker in pool {team.pool} after {timeout}s:\n{log.read_text()[-3000:]}")
