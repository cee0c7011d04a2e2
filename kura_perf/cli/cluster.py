"""`kura-perf cluster up|down|status|run|add-worker`: a local cluster under the data root and runs on it."""

from __future__ import annotations

import sys

from kura_perf.cli.printing import print_records
from kura_perf.services.local import LocalCluster
from kura_perf.services.services import ServiceError
from kura_perf.settings.paths import Paths
from kura_perf.store import query


def _cluster(args) -> LocalCluster:
    paths = Paths.from_env()
    return LocalCluster(paths.root, paths.results)


def cmd_up(args) -> int:
    state = _cluster(args).up(workers=args.workers, concurrency=args.concurrency,
                              visibility_timeout_s=args.visibility_timeout)
    print(f"cluster up: Postgres {state.settings.postgres_address}, Redis {state.settings.redis_address}, "
          f"{len(state.workers())} worker(s) x {args.concurrency} process(es)")
    print(f"  DAGSTER_HOME={state.dagster_home}  (instance storage in Postgres)")
    print(f"  state: {_cluster(args).state_path}")
    return 0


def cmd_down(args) -> int:
    stopped = _cluster(args).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "no cluster running")
    return 0


def cmd_status(args) -> int:
    rows = _cluster(args).status()
    if not rows:
        print("no cluster state")
        return 1
    for service, alive in rows:
        port = f":{service.port}" if service.port else ""
        print(f"{service.name:10s} pgid {service.pid:<8d} {'up' if alive else 'DOWN':5s} 127.0.0.1{port}  log {service.log}")
    return 0 if all(alive for _, alive in rows) else 1


def cmd_add_worker(args) -> int:
    service = _cluster(args).add_worker(args.name, args.concurrency)
    print(f"{service.name} started (pgid {service.pid})")
    return 0


def cmd_stop_worker(args) -> int:
    _cluster(args).stop_worker(args.name)
    print(f"{args.name} stopped")
    return 0


def cmd_run(args) -> int:
    from kura_perf.defs.cluster_launch import run_on_cluster  # dagster: start-up time of the other commands

    cluster = _cluster(args)
    state = cluster.load()
    if state is None:
        raise ServiceError(f"no cluster state in {cluster.state_path}: start one with `make cluster`")
    outcome = run_on_cluster(state.settings, state.dagster_home, args.scale, args.profile, shards=args.shards,
                             job="cluster_pipeline" if args.all_stages else "cluster_embeddings")
    print_records(outcome.records)
    shards = query(Paths.from_env().metrics,
                   "SELECT shard_index, status, items_in, round(wall_s, 3) wall_s, "
                   "round(cpu_user_s + cpu_sys_s, 3) cpu_s, round(peak_rss_mb) peak_rss_mb, worker "
                   "FROM shard_runs WHERE run_id = ? ORDER BY shard_index, finished_at", [outcome.run_id])
    if len(shards):
        print("\nshards:\n" + shards.to_string(index=False))
    if not outcome.success:
        print(f"\ncluster run {outcome.run_id} FAILED: {outcome.failure}", file=sys.stderr)
        return 1
    print(f"\ncluster run {outcome.run_id} succeeded")
    return 0


def add_commands(sub) -> None:
    """cluster up|down|status|add-worker|stop-worker manage processes: no clean-up after dead runs first;
    cluster run prints run records, so `main` cleans up before it."""
    cluster = sub.add_parser("cluster", help="a local Postgres + Redis + Celery-worker cluster, and runs on it")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start Postgres, Redis and N workers on 127.0.0.1 under the data root")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--concurrency", type=int, default=1, help="processes per worker (cores it may use)")
    up.add_argument("--visibility-timeout", type=int, default=1800,
                    help="seconds before a dead worker's task is handed to another (must exceed the longest step)")
    up.set_defaults(func=cmd_up, reaps=False)
    down = csub.add_parser("down", help="stop the cluster's process groups")
    down.set_defaults(func=cmd_down, reaps=False)
    status = csub.add_parser("status", help="the cluster's services and whether they are up")
    status.set_defaults(func=cmd_status, reaps=False)
    add = csub.add_parser("add-worker", help="start one more worker")
    add.add_argument("--name", required=True)
    add.add_argument("--concurrency", type=int, default=1)
    add.set_defaults(func=cmd_add_worker, reaps=False)
    stop = csub.add_parser("stop-worker", help="stop one worker (its process group)")
    stop.add_argument("--name", required=True)
    stop.set_defaults(func=cmd_stop_worker, reaps=False)
    run = csub.add_parser("run", help="run one partition on the cluster, embeddings in shards")
    run.add_argument("--scale", default="1k")
    run.add_argument("--profile", default="offline")
    run.add_argument("--shards", type=int, default=4)
    run.add_argument("--all-stages", action="store_true", help="also clusters, meta_clusters and projections")
    run.set_defaults(func=cmd_run, reaps=True)

