"""What a cluster run needs to know, as one object: where Postgres and Redis are, where the shared
results live, how many shards and workers. It renders the two files Dagster reads:

- `dagster.yaml` (the instance): run, event-log and schedule storage in PostgreSQL;
- `celery.yaml` (the `execution:` block): the dagster-celery executor on the Redis broker, with
  late acknowledgement so a task whose worker dies goes back to the queue.

The same text is what `deploy/` ships for a multi-machine setup (with env vars for the addresses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import yaml

from kura_perf.services.services import LOOPBACK


@dataclass
class ClusterSettings:
    postgres_host: str = LOOPBACK
    postgres_port: int = 5432
    postgres_user: str = "kura"
    postgres_password: str = ""
    postgres_db: str = "dagster"
    redis_host: str = LOOPBACK
    redis_port: int = 6379
    # Seconds before Redis hands an unacknowledged task (its worker died) to another worker. It must
    # exceed the longest step, or a slow step would be handed out twice while still running.
    visibility_timeout_s: int = 1800
    # How often a worker sweeps for such tasks (kombu's unacked_restore_interval, throttle 1).
    restore_interval_s: int = 5
    extra_celery: dict = field(default_factory=dict)

    @property
    def postgres_address(self) -> str:
        return f"{self.postgres_host}:{self.postgres_port}"

    @property
    def redis_address(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"

    @property
    def broker_url(self) -> str:
        return f"redis://{self.redis_address}/0"

    @property
    def backend_url(self) -> str:
        return f"redis://{self.redis_address}/1"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClusterSettings":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def instance_config(self) -> dict:
        """dagster.yaml: all instance storage in PostgreSQL."""
        db = {"username": self.postgres_user, "password": self.postgres_password, "hostname": self.postgres_host,
              "db_name": self.postgres_db, "port": self.postgres_port,
              # SQLAlchemy 2.1 maps plain "postgresql" to psycopg 3; dagster-postgres ships psycopg2.
              "scheme": "postgresql+psycopg2"}
        return {
            "storage": {"postgres": {"postgres_db": db}},
            "run_queue": {"max_concurrent_runs": 1},
            "telemetry": {"enabled": False},
        }

    def celery_config_source(self) -> dict:
        return {
            "task_acks_late": True,  # ack after the step, not before: a killed worker's task is redelivered
            "task_reject_on_worker_lost": True,  # a killed pool process requeues its task at once
            "worker_prefetch_multiplier": 1,  # a worker holds one task, so shards spread over workers
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {
                "visibility_timeout": self.visibility_timeout_s,
                "unacked_restore_interval": self.restore_interval_s,
                "unacked_restore_throttle": 1,
                # dagster-celery's defaults, kept: the executor replaces the whole dict
                "max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
            },
            **self.extra_celery,
        }

    def executor_config(self) -> dict:
        """The `execution: config:` block for the celery executor (and `dagster-celery worker start -y`)."""
        return {"broker": self.broker_url, "backend": self.backend_url, "config_source": self.celery_config_source()}

    def celery_yaml(self) -> str:
        return yaml.safe_dump({"execution": {"config": self.executor_config()}}, sort_keys=False)

    def dagster_yaml(self) -> str:
        return ("# Written by kura-perf cluster: Dagster instance storage in PostgreSQL.\n"
                + yaml.safe_dump(self.instance_config(), sort_keys=False))
