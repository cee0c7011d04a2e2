"""A local cluster under the data root: `<root>/cluster/{postgres,redis,workers,dagster_home}`, each
service in its own process group on 127.0.0.1, pids and ports in `<root>/cluster/state.json`.

`up` starts Postgres, Redis and N Dagster Celery workers (stopping what it started if a later one
fails); `down` stops the process groups listed in the state file, workers first; `check_services`
tells, before a run, whether Postgres and Redis answer, naming the one that does not and its address.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text
from kura_perf.services.services import (
    LOOPBACK,
    Service,
    ServiceError,
    free_port,
    group_alive,
    spawn_worker,
    start_postgres,
    start_redis,
    start_worker,
    stop_service,
    wait_worker_ready,
)
from kura_perf.services.settings import ClusterSettings


def check_services(settings: ClusterSettings, timeout_s: float = 3.0) -> None:
    """Raise ServiceError naming Postgres or Redis (and its address) if it does not answer."""
    import psycopg2
    import redis

    try:
        psycopg2.connect(host=settings.postgres_host, port=settings.postgres_port, user=settings.postgres_user,
                         password=settings.postgres_password or None, dbname=settings.postgres_db,
                         connect_timeout=int(max(timeout_s, 1))).close()
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise ServiceError(f"Postgres (Dagster instance storage) at {settings.postgres_address} is not reachable: "
                           f"{first}. Start the cluster with `make cluster` or fix the address.") from None
    try:
        client = redis.Redis(host=settings.redis_host, port=settings.redis_port, socket_connect_timeout=timeout_s,
                             socket_timeout=timeout_s)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        raise ServiceError(f"Redis (Celery broker) at {settings.redis_address} is not reachable: {exc}. "
                           "Start the cluster with `make cluster` or fix the address.") from None


@dataclass
class ClusterState:
    settings: ClusterSettings
    services: list[Service]
    dagster_home: str
    celery_yaml: str
    data_root: str
    results: str | None = None

    def as_dict(self) -> dict:
        return {"settings": self.settings.as_dict(), "services": [s.as_dict() for s in self.services],
                "dagster_home": self.dagster_home, "celery_yaml": self.celery_yaml, "data_root": self.data_root,
                "results": self.results}

    @classmethod
    def from_dict(cls, data: dict) -> "ClusterState":
        return cls(ClusterSettings.from_dict(data["settings"]), [Service.from_dict(s) for s in data["services"]],
                   data["dagster_home"], data["celery_yaml"], data["data_root"], data.get("results"))

    def workers(self) -> list[Service]:
        return [s for s in self.services if s.name.startswith("worker")]

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


class LocalCluster:
    def __init__(self, data_root: Path, results: str | None = None, folder: Path | None = None):
        self.data_root = Path(data_root).resolve()
        self.results = results
        self.folder = Path(folder or self.data_root / "cluster").resolve()
        self.state_path = self.folder / "state.json"

    # -- state ---------------------------------------------------------------------------------
    def load(self) -> ClusterState | None:
        if not self.state_path.is_file():
            return None
        try:
            return ClusterState.from_dict(json.loads(self.state_path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(f"cluster state file {self.state_path} is unreadable ({exc}); "
                               "stop its services by hand (their pids are in the file) and delete it") from None

    def _save(self, state: ClusterState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, json.dumps(state.as_dict(), indent=1))

    # -- up / down -----------------------------------------------------------------------------
    def worker_env(self, dagster_home: Path, base_env: dict | None = None) -> dict:
        """The workers' environment: this one's (PATH, PYTHONPATH, ...) plus the instance and data root."""
        env = dict(base_env if base_env is not None else os.environ)
        env.update({"DAGSTER_HOME": str(dagster_home), "KURA_PERF_HOME": str(self.data_root),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        if self.results:
            env["KURA_PERF_RESULTS"] = self.results
        return env

    def up(self, workers: int = 2, concurrency: int = 1, visibility_timeout_s: int = 1800,
           restore_interval_s: int = 5, base_env: dict | None = None) -> ClusterState:
        existing = self.load()
        if existing and any(group_alive(s.pid) for s in existing.services):
            raise ServiceError(f"a cluster is already running from {self.state_path} "
                               f"(Postgres {existing.settings.postgres_address}, Redis {existing.settings.redis_address}); "
                               "stop it with `make cluster-stop`")
        settings = ClusterSettings(postgres_port=free_port(), redis_port=free_port(),
                                   visibility_timeout_s=visibility_timeout_s, restore_interval_s=restore_interval_s)
        home = self.folder / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(settings.dagster_yaml())
        celery_yaml = self.folder / "celery.yaml"
        celery_yaml.write_text(settings.celery_yaml())
        state = ClusterState(settings, [], str(home), str(celery_yaml), str(self.data_root), self.results)
        try:
            state.services.append(start_postgres(self.folder / "postgres", settings.postgres_port,
                                                 settings.postgres_user, settings.postgres_db))
            self._save(state)
            state.services.append(start_redis(self.folder / "redis", settings.redis_port))
            self._save(state)
            self._migrate(home)
            env = self.worker_env(home, base_env)
            started = []
            for i in range(1, workers + 1):  # side by side: each takes seconds to import Dagster
                started.append(spawn_worker(f"worker-{i}", self.folder / "workers", celery_yaml,
                                            env, concurrency))
                state.services.append(started[-1])
                self._save(state)
            for service in started:
                wait_worker_ready(service)
        except BaseException:
            self._stop_all(state)
            self.state_path.unlink(missing_ok=True)
            raise
        return state

    @staticmethod
    def _migrate(home: Path) -> None:
        """Create the instance's tables once, before workers connect at the same time (Dagster's
        storage setup is not safe to race)."""
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)

    def add_worker(self, name: str, concurrency: int = 1, base_env: dict | None = None) -> Service:
        state = self.load()
        if state is None:
            raise ServiceError(f"no cluster state in {self.state_path}: run `make cluster` first")
        env = self.worker_env(Path(state.dagster_home), base_env)
        service = start_worker(name, self.folder / "workers", Path(state.celery_yaml),
                               env, concurrency)
        state.services.append(service)
        self._save(state)
        return service

    def stop_worker(self, name: str) -> bool:
        """Stop one worker's process group and drop it from the state file."""
        state = self.load()
        if state is None:
            raise ServiceError(f"no cluster state in {self.state_path}")
        try:
            service = state.service(name)
        except StopIteration:
            raise ServiceError(f"no worker '{name}' in {self.state_path}") from None
        stopped = stop_service(service)
        state.services.remove(service)
        self._save(state)
        return stopped

    def _stop_all(self, state: ClusterState) -> list[str]:
        stopped = []
        order = [*state.workers(), *[s for s in state.services if not s.name.startswith("worker")][::-1]]
        for service in order:
            # Postgres: SIGINT is its "fast" shutdown (SIGTERM waits for every client to leave).
            sig = signal.SIGINT if service.name == "postgres" else signal.SIGTERM
            if stop_service(service, sig=sig):
                stopped.append(service.name)
        return stopped

    def down(self) -> list[str]:
        state = self.load()
        if state is None:
            return []
        stopped = self._stop_all(state)
        self.state_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[tuple[Service, bool]]:
        state = self.load()
        return [(s, group_alive(s.pid)) for s in state.services] if state else []


__all__ = ["LocalCluster", "ClusterState", "check_services", "LOOPBACK"]
