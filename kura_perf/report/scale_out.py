"""The report's scale-out section: what the cluster runs measured, grouped by host and worker, and a
projection of sharded embeddings onto K machines, marked as projected.

Measured: every sharded embeddings stage record (stage_runs whose `extra` names its shards) and its
shard rows (shard_runs). Projected: the time for N conversations on K machines, from the measured
rows per second of one worker process on a host, times the worker processes per machine (one per
core, as `make cluster` runs them), plus the measured merge cost per row. It assumes the shards are
as many as the worker processes and that Postgres, Redis and the shared storage keep up: none of
which this section measures.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from kura_perf.report.html import Section, heading, note, paragraph, render_table
from kura_perf.report.tables import Cell, Table
from kura_perf.store import query

PROJECTED_ROWS = (100_000, 1_000_000)
PROJECTED_MACHINES = (1, 2, 4, 8, 16, 32)


def _shard_rows(metrics_dir) -> pd.DataFrame:
    return query(metrics_dir, "SELECT * FROM shard_runs")


def _cluster_stage_records(metrics_dir) -> pd.DataFrame:
    runs = query(metrics_dir, "SELECT * FROM stage_runs WHERE stage = 'embeddings' AND status = 'success'")
    if not len(runs):
        return runs
    extra = runs["extra"].map(lambda e: json.loads(e) if isinstance(e, str) and e else {})
    runs = runs[extra.map(lambda e: "shards" in e)].copy()
    runs["shards"] = extra[runs.index].map(lambda e: e["shards"])
    runs["workers"] = extra[runs.index].map(lambda e: len(e.get("workers", [])))
    runs["elapsed_s"] = extra[runs.index].map(lambda e: e.get("elapsed_s"))
    runs["merge_wall_s"] = extra[runs.index].map(lambda e: e.get("merge_wall_s"))
    return runs


def _num(value, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def _by_host_and_worker(shards: pd.DataFrame) -> Table:
    ok = shards[shards["status"] == "success"].copy()
    ok["worker_name"] = ok["worker"].fillna("?").str.split(" pid=").str[0]
    ok["cpu_s"] = ok["cpu_user_s"].fillna(0) + ok["cpu_sys_s"].fillna(0)
    table = Table(["host", "cores", "worker", "shards", "rows", "shard wall s", "CPU s", "rows/s per worker"],
                  caption="Successful shards per host and worker (measured). Lost attempts: see the failures table.")
    grouped = ok.groupby(["host_fingerprint", "host_cpu", "host_cores", "worker_name"], dropna=False)
    for (fingerprint, cpu, cores, worker), g in grouped:
        wall = g["wall_s"].sum()
        table.add(f"{cpu} ({fingerprint})", _num(cores, 0), worker, len(g), int(g["items_in"].sum()),
                  _num(wall), _num(g["cpu_s"].sum()), _num(g["items_in"].sum() / wall if wall else None))
    return table


def _measured_runs(runs: pd.DataFrame) -> Table:
    table = Table(["host", "scale", "shards", "workers", "wall s (critical path)", "elapsed s", "CPU s",
                   "rows/s"], caption="Sharded embeddings stage records (measured): wall = the busiest worker process's "
                                      "shards + merge; elapsed = first shard start to merge end, with queueing and "
                                      "step start-up.")
    for _, r in runs.sort_values(["host_fingerprint", "scale_n", "workers", "finished_at"]).iterrows():
        cpu = (r["cpu_user_s"] or 0) + (r["cpu_sys_s"] or 0)
        table.add(str(r["host_fingerprint"]), r["scale"], int(r["shards"]), int(r["workers"]), _num(r["wall_s"]),
                  _num(r["elapsed_s"]), _num(cpu), _num(r["items_per_s"]))
    return table


def project(rows_per_s_per_worker: float, workers_per_machine: int, merge_s_per_row: float,
            n_rows: int, machines: int) -> float:
    """Seconds to embed n_rows on `machines` machines, each running `workers_per_machine` worker
    processes at the measured per-worker rate, plus the (serial) merge."""
    return n_rows / (rows_per_s_per_worker * workers_per_machine * machines) + merge_s_per_row * n_rows


def _projection(shards: pd.DataFrame, runs: pd.DataFrame) -> tuple[Table, str] | None:
    ok = shards[(shards["status"] == "success") & (shards["wall_s"] > 0)]
    if not len(ok):
        return None
    biggest = ok[ok["scale_n"] == ok["scale_n"].max()]
    rate = float((biggest["items_in"] / biggest["wall_s"]).median())
    cores = int(biggest["host_cores"].dropna().iloc[0]) if biggest["host_cores"].notna().any() else 1
    merged = runs[runs["items_in"] > 0] if len(runs) else runs
    merge_per_row = float((merged["merge_wall_s"] / merged["items_in"]).median()) if len(merged) else 0.0
    table = Table(["conversations", *[f"{k} machine{'s' if k > 1 else ''}" for k in PROJECTED_MACHINES]],
                  caption="PROJECTED, not measured: embedding hours on K machines like this host.")
    for n in PROJECTED_ROWS:
        table.add(f"{n:,}", *[Cell(f"{project(rate, cores, merge_per_row, n, k) / 3600:,.2f} h", "extrapolated")
                              for k in PROJECTED_MACHINES])
    basis = (f"Basis: median {rate:.1f} rows/s per worker process (shards at scale {int(biggest['scale_n'].iloc[0]):,}, "
             f"{len(biggest)} shard(s), host {biggest['host_fingerprint'].iloc[0]}), {cores} worker process(es) per "
             f"machine (one per core), merge {merge_per_row * 1e3:.3f} ms per row. Assumes as many shards as worker "
             "processes, and that Postgres, Redis and the shared storage keep up; the measured figures come from a "
             "shared machine, so the per-worker rate is a floor.")
    return table, basis


def scale_out_section(metrics_dir) -> Section | None:
    """None when no cluster run has been recorded."""
    shards = _shard_rows(metrics_dir)
    if not len(shards):
        return None
    runs = _cluster_stage_records(metrics_dir)
    s = Section("scale-out", "Scale-out: sharded embeddings on Celery workers")
    s.badge = "extrapolated"
    hosts = shards["host_fingerprint"].dropna().unique()
    s.provenance = [("Hosts", ", ".join(map(str, hosts)) or "unknown"),
                    ("Figures", "measured per host and worker; the K-machine table is projected")]
    s.add(paragraph("Records are grouped by host: figures from different machines are never mixed in one row."))
    s.add(render_table(_by_host_and_worker(shards), "scale-out-workers"))
    if len(runs):
        s.add(render_table(_measured_runs(runs), "scale-out-runs"))
    lost = shards[shards["status"] != "success"]
    if len(lost):
        table = Table(["run", "shard", "status", "worker", "reason"], caption="Shard attempts that did not finish.")
        for _, r in lost.iterrows():
            table.add(str(r["run_id"])[:8], int(r["shard_index"]), r["status"], r["worker"] or "?",
                      (r["error_message"] or "")[:200])
        s.add(render_table(table, "scale-out-lost"))
    projected = _projection(shards, runs)
    if projected:
        table, basis = projected
        s.add(heading("Projection for K machines (projected)"))
        s.add(render_table(table, "scale-out-projection"))
        s.add(note(basis))
    else:
        s.add(paragraph("No successful shard yet: nothing to project from."))
    return s
