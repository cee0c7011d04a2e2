"""The services of a local cluster, each a real server in its own process group on 127.0.0.1:
PostgreSQL (Dagster's instance storage), Redis (the Celery broker and result backend) and Dagster's
Celery workers (`dagster-celery worker start`).

Every start returns a `Service` (name, pid = process-group id, port, folder, log) so the owner can
stop exactly what it started: `stop_service` signals the process group, never a process name.
No Dagster import here: the workers are separate processes started through Dagster's own CLI.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kura_perf.console import cluster_library_warning_filters
from kura_perf.errors import KuraPerfError

LOOPBACK = "127.0.0.1"


class ServiceError(KuraPerfError):
    """A cluster service that cannot be started or reached: names the service and its address."""


@dataclass
class Service:
    name: str  # postgres | redis | worker-1 ...
    pid: int  # the process-group leader (started with start_new_session)
    port: int | None
    folder: str
    log: str

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Service":
        return cls(**data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _spawn(name: str, command: list[str], folder: Path, port: int | None, env: dict | None = None,
           user: str | None = None) -> tuple[Service, subprocess.Popen]:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    with open(log, "wb") as out:  # a fresh log per start: readiness is read from it
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, user=user, cwd=folder)
    return Service(name, process.pid, port, str(folder), str(log)), process


def _tail(path: str, chars: int = 1500) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _wait_port(service: Service, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{service.name} on {LOOPBACK}:{service.port} exited with code "
                               f"{process.returncode} on start; log {service.log}:\n{_tail(service.log)}")
        if port_open(service.port):
            return
        time.sleep(0.1)
    stop_service(service)
    raise ServiceError(f"{service.name} did not listen on {LOOPBACK}:{service.port} within {timeout_s:g} s; "
                       f"log {service.log}:\n{_tail(service.log)}")


# --- PostgreSQL -----------------------------------------------------------------------------------

def postgres_bin(tool: str) -> str:
    """initdb/pg_ctl/postgres: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise ServiceError(f"postgres: '{tool}' not found on PATH or in /usr/lib/postgresql/*/bin "
                           "(install Debian's postgresql package)")
    return candidates[-1]


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: then run it as the 'postgres' (or 'nobody') system user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceError("postgres: running as root and no 'postgres' or 'nobody' user to run the server as")


def start_postgres(folder: Path, port: int, db_user: str = "kura", db_name: str = "dagster",
                   timeout_s: float = 60.0) -> Service:
    """initdb (once) a cluster in folder/pgdata, serve it on 127.0.0.1:port (trust auth on loopback
    only, socket in the folder), create the database."""
    folder = Path(folder).resolve()
    data = folder / "pgdata"
    user = _postgres_user()
    folder.mkdir(parents=True, exist_ok=True)
    if user:
        uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
        os.chown(folder, uid, gid)
        if subprocess.run(["test", "-w", str(folder)], user=user).returncode != 0:
            raise ServiceError(f"postgres: the '{user}' user (PostgreSQL refuses to run as root) cannot reach "
                               f"{folder}: a parent folder is not traversable by others (chmod o+x it), "
                               "or use a data root under /tmp")
    if not (data / "PG_VERSION").exists():
        init = subprocess.run([postgres_bin("initdb"), "-D", str(data), "-U", db_user, "--auth=trust",
                               "-E", "UTF8", "--no-instructions"],
                              capture_output=True, text=True, user=user, cwd=folder)
        if init.returncode != 0:
            raise ServiceError(f"postgres: initdb in {data} failed: {init.stderr.strip()[-1500:]}")
    command = [postgres_bin("postgres"), "-D", str(data), "-h", LOOPBACK, "-p", str(port),
               "-k", str(folder), "-c", "fsync=off", "-c", "max_connections=100"]
    service, process = _spawn("postgres", command, folder, port, user=user)
    _wait_port(service, process, timeout_s)
    _create_database(service, db_user, db_name, timeout_s)
    return service


def _create_database(service: Service, db_user: str, db_name: str, timeout_s: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con = psycopg2.connect(host=LOOPBACK, port=service.port, user=db_user, dbname="postgres",
                                   connect_timeout=3)
            break
        except psycopg2.OperationalError as exc:  # "the database system is starting up"
            if time.monotonic() > deadline:
                raise ServiceError(f"postgres on {LOOPBACK}:{service.port}: {exc}") from None
            time.sleep(0.2)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        con.close()


# --- Redis ----------------------------------------------------------------------------------------

def start_redis(folder: Path, port: int, timeout_s: float = 30.0) -> Service:
    """redis-server on 127.0.0.1:port, its files in folder; no snapshots (a broker, not a database)."""
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceError("redis: 'redis-server' not found on PATH (apt-get install -y redis-server)")
    folder = Path(folder).resolve()
    command = [binary, "--bind", LOOPBACK, "--port", str(port), "--dir", str(folder), "--save", "",
               "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"]
    service, process = _spawn("redis", command, folder, port)
    _wait_port(service, process, timeout_s)
    return service


# --- Dagster's Celery workers ---------------------------------------------------------------------

def dagster_celery_command() -> list[str]:
    """`dagster-celery` beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("dagster-celery")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dagster-celery")
    if not found:
        raise ServiceError("celery worker: 'dagster-celery' not found (pip install '.[cluster]')")
    return [found]


def spawn_worker(name: str, folder: Path, celery_yaml: Path, env: dict, concurrency: int = 1) -> Service:
    """Start one worker through Dagster's own command, without waiting for it:
    `dagster-celery worker start -A dagster_celery.app -y celery.yaml -n NAME -- --concurrency N`."""
    folder = Path(folder).resolve()
    bindir = str(Path(sys.executable).parent)
    env = {**env, "PATH": bindir + os.pathsep + env.get("PATH", os.environ.get("PATH", "")),
           "PYTHONUNBUFFERED": "1"}
    quiet = cluster_library_warning_filters()  # the one-patch dagster-celery lag, not in every worker's log
    if quiet:
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS", ""), quiet]))
    command = [*dagster_celery_command(), "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_yaml),
               "-n", name, "-l", "INFO", "--", f"--concurrency={concurrency}", "--without-gossip",
               "--without-mingle"]
    service, _ = _spawn(name, command, folder, None, env=env)
    return service


def wait_worker_ready(service: Service, timeout_s: float = 120.0) -> None:
    """Until Celery logs '<name>@host ready.'; a clear error (and the worker stopped) otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not group_alive(service.pid) or _exited(service.pid):
            raise ServiceError(f"celery worker {service.name} exited on start; log {service.log}:\n"
                               f"{_tail(service.log)}")
        if " ready." in _tail(service.log, 20000):
            return
        time.sleep(0.2)
    stop_service(service)
    raise ServiceError(f"celery worker {service.name} was not ready within {timeout_s:g} s; log {service.log}:\n"
                       f"{_tail(service.log)}")


def start_worker(name: str, folder: Path, celery_yaml: Path, env: dict, concurrency: int = 1,
                 ready_timeout_s: float = 120.0) -> Service:
    service = spawn_worker(name, folder, celery_yaml, env, concurrency)
    wait_worker_ready(service, ready_timeout_s)
    return service


def _exited(pid: int) -> bool:
    """True if our child `pid` has exited (reaps it); False if it runs or is not our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


# --- stopping -------------------------------------------------------------------------------------

def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _reap(pgid: int) -> None:
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_service(service: Service, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Signal the service's process group (sig, then SIGKILL after timeout_s); True once it is gone."""
    for current in (sig, signal.SIGKILL):
        try:
            os.killpg(service.pid, current)
        except ProcessLookupError:
            _reap(service.pid)
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(service.pid)
            if not group_alive(service.pid):
                return True
            time.sleep(0.1)
    return not group_alive(service.pid)
