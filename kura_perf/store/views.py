"""Views over the record files. The same SQL serves an in-memory connection (our queries) and the
data/metrics.duckdb file (for analysts' own DuckDB shells). metrics_dir may be an fsspec URL: the
connection then reads through that filesystem (registered by kura_perf.store.db)."""

from __future__ import annotations

from pathlib import Path

from kura_perf.files.location import Location, resolve
from kura_perf.store.schema import COLUMN_DEFAULTS, TABLES, duckdb_type


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _glob(metrics_dir: Path, table: str, base: str | None = None) -> str | None:
    """The SQL string of the table's record files, None when it has none. base: a URL prefix that
    stands for metrics_dir in the SQL (the read-only connection's file system, store/readonly.py)."""
    root = resolve(metrics_dir)
    folder = root / table
    has_files = folder.glob("date=*/*.parquet") if isinstance(root, Location) else any(folder.glob("date=*/*.parquet"))
    if not has_files:
        return None
    if base is not None:
        return _sql_str(f"{base}{table}/date=*/*.parquet")
    if isinstance(root, Location):
        return _sql_str(f"{folder.url}/date=*/*.parquet")
    return _sql_str(str(folder / "date=*" / "*.parquet"))


def table_view_sql(metrics_dir: Path, table: str, present: set[str] | None = None, base: str | None = None) -> str:
    """The view of one table over its record files. present: the columns the files have (None: all);
    a column no file has yet (records written before it was added) reads as NULL of its type, or as its
    schema.COLUMN_DEFAULTS value where it has one (also for the NULLs of older files read beside newer ones).
    Columns the files have that the schema does not know are left out (store/validation.py)."""
    schema = TABLES[table]
    defaults = COLUMN_DEFAULTS.get(table, {})
    glob = _glob(metrics_dir, table, base)
    if glob is not None:
        names = set(schema.names)

        def column(f) -> str:
            value = f'"{f.name}"' if present is None or f.name in present else "NULL"
            default = defaults.get(f.name)
            if default in names and present is not None and default not in present:
                default = None  # the column the default copies is missing too
            if default:
                value = f"coalesce({value}, {default})"
            return f'CAST({value} AS {duckdb_type(f.type)}) AS "{f.name}"'

        cols = ", ".join(column(f) for f in schema)
        return (f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} FROM read_parquet({glob}, "
                f"union_by_name = true, hive_partitioning = false)")
    cols = ", ".join(f'CAST(NULL AS {duckdb_type(f.type)}) AS "{f.name}"' for f in schema)
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} LIMIT 0"


def present_columns(con, metrics_dir: Path, table: str, base: str | None = None) -> set[str] | None:
    glob = _glob(metrics_dir, table, base)
    if glob is None:
        return None
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({glob}, union_by_name = true, "
                       f"hive_partitioning = false)").fetchall()
    return {row[0] for row in rows}


# Derived views. Documented in README ("Querying the metrics store").
DERIVED = {
    # Every stage record with `contended` true when its timings were disturbed: either the box was busy
    # while it ran (the record's own `contended`, from /proc/stat: meter/host_load.py), or a stage of
    # another run was running on the same host at the same time (`overlapping_runs`, computed here from
    # the records' own start and finish times, so no writer has to know about the others).
    "stage_runs_contended": """
        SELECT s.* EXCLUDE (contended),
               coalesce(s.contended, false) OR coalesce(o.overlapping_runs, 0) > 0 AS contended,
               coalesce(o.overlapping_runs, 0) AS overlapping_runs
        FROM stage_runs s LEFT JOIN (
            SELECT a.record_id, count(DISTINCT b.run_id) AS overlapping_runs
            FROM stage_runs a JOIN stage_runs b
              ON a.host_fingerprint = b.host_fingerprint AND a.run_id <> b.run_id
             AND a.started_at < b.finished_at AND b.started_at < a.finished_at
            GROUP BY a.record_id) o ON s.record_id = o.record_id""",
    # The most recent successful, metered record of each stage per partition and host
    # (runs with --no-meter have no memory figures, so they never stand for a partition).
    "latest_stage_runs": """
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY stage, profile, scale, host_fingerprint
                                         ORDER BY finished_at DESC) AS rn
            FROM stage_runs_contended WHERE status = 'success' AND coalesce(metered, true))
        WHERE rn = 1""",
    # One row per run: totals across its stages.
    "run_summary": """
        SELECT run_id, profile, scale, any_value(scale_n) AS scale_n, any_value(host_fingerprint) AS host_fingerprint,
               any_value(code_version) AS code_version, min(started_at) AS started_at,
               count(*) AS stages, count(*) FILTER (WHERE status = 'success') AS stages_ok,
               sum(wall_s) AS wall_s, max(peak_rss_mb) AS peak_rss_mb, sum(bytes_written) AS bytes_written,
               sum(api_calls) AS api_calls, sum(api_429s) AS api_429s, sum(cost_usd) AS cost_usd,
               -- what metering cost: the sampler thread's CPU over the run's wall time (DESIGN §4: under 2%)
               sum(meter_cpu_s) FILTER (WHERE metered) / nullif(sum(wall_s) FILTER (WHERE metered), 0)
                   AS meter_overhead_share,
               bool_or(contended) AS contended,
               string_agg(CASE WHEN status <> 'success' THEN stage || ': ' || error_message END, '; ') AS failures
        FROM stage_runs_contended GROUP BY run_id, profile, scale""",
    # Scaling curves: median figures per stage and scale (successful runs).
    "scaling": """
        SELECT stage, backend, profile, host_fingerprint, scale, scale_n, count(*) AS runs,
               median(wall_s) AS wall_s, median(peak_rss_mb) AS peak_rss_mb,
               median(peak_rss_mb - rss_start_mb) AS peak_growth_mb,
               median(items_per_s) AS items_per_s, median(bytes_written) AS bytes_written,
               median(bytes_written) / nullif(any_value(scale_n), 0) AS bytes_per_conversation,
               median(wall_s) * 1000.0 / nullif(any_value(scale_n), 0) AS s_per_1k_conversations,
               median(cost_usd) * 1000.0 / nullif(any_value(scale_n), 0) AS cost_per_1k_conversations,
               count(*) FILTER (WHERE contended) AS contended_runs
        FROM stage_runs_contended WHERE status = 'success' AND coalesce(metered, true)
        GROUP BY stage, backend, profile, host_fingerprint, scale, scale_n""",
    # Where the pipeline broke: guards that stopped a stage, failures, interrupts and deaths (SIGKILL,
    # the OOM killer), with how far the stage got and its projected wall time where one is honest.
    "breaking_points": """
        SELECT stage, profile, scale, scale_n, status, error_type, error_message, peak_rss_mb, wall_s,
               finished_at, run_id, host_fingerprint, items_done, items_total, rate_items_per_s, elapsed_s,
               projected_wall_s, projection_kind, items_in, api_429s, contended
        FROM stage_runs_contended WHERE status <> 'success' ORDER BY finished_at DESC""",
    # Failed regression checks.
    "regressions": """
        SELECT * FROM check_results WHERE check_name LIKE 'regression%' AND NOT passed
        ORDER BY checked_at DESC""",
    # Backend against backend (`kura-perf compare`): the latest record of each stage per backend, profile,
    # scale and host, whatever its status (a breaking point is part of the comparison), plus a 'total'
    # row per partition (sums; peak = the largest stage peak; quality from the clusters stage).
    "comparison": """
        WITH latest AS (
            SELECT * EXCLUDE (rn) FROM (
                SELECT *, row_number() OVER (PARTITION BY backend, profile, scale, host_fingerprint, stage
                                             ORDER BY finished_at DESC) AS rn
                FROM stage_runs_contended WHERE coalesce(metered, true) OR status <> 'success')
            WHERE rn = 1)
        SELECT backend, profile, scale, scale_n, host_fingerprint, stage, status, wall_s, peak_rss_mb,
               bytes_written, api_calls, api_429s, cost_usd, n_clusters, ari, nmi, silhouette, kura_version,
               finished_at
        FROM latest
        UNION ALL
        SELECT backend, profile, scale, any_value(scale_n), host_fingerprint, 'total',
               CASE WHEN bool_and(status = 'success') THEN 'success' ELSE 'incomplete' END,
               sum(wall_s), max(peak_rss_mb), sum(bytes_written), sum(api_calls), sum(api_429s), sum(cost_usd),
               any_value(n_clusters) FILTER (WHERE stage = 'clusters'), any_value(ari) FILTER (WHERE stage = 'clusters'),
               any_value(nmi) FILTER (WHERE stage = 'clusters'),
               any_value(silhouette) FILTER (WHERE stage = 'clusters'), any_value(kura_version), max(finished_at)
        FROM latest GROUP BY backend, profile, scale, host_fingerprint""",
    # Clustering quality per hierarchy level and truth level for the latest run of each partition and
    # host: the meta_clusters stage's rows (every level) when it ran, else the clusters stage's (level 0
    # only). finest_truth marks the finest truth level's rows (the one-figure views use those).
    "quality_by_level": """
        WITH ranked AS (
            SELECT *, dense_rank() OVER (PARTITION BY profile, scale, host_fingerprint
                                         ORDER BY finished_at DESC, record_id) AS rk
            FROM quality_levels q
            WHERE stage = 'meta_clusters' OR NOT EXISTS (
                SELECT 1 FROM quality_levels m WHERE m.run_id = q.run_id AND m.stage = 'meta_clusters'))
        SELECT backend, profile, scale, scale_n, host_fingerprint, run_id, stage, level, truth_level, truth_rank,
               true_classes, n_clusters, noise_share, true_topics, ari, nmi, homogeneity, completeness, topics_found,
               silhouette, is_topic_level,
               truth_rank = max(truth_rank) OVER (PARTITION BY record_id) AS finest_truth,
               finished_at, record_id
        FROM ranked WHERE rk = 1 ORDER BY profile, scale_n, truth_rank, level""",
    # Storage per conversation by stage, latest run per partition.
    "storage": """
        SELECT profile, scale, scale_n, stage, bytes_written,
               bytes_written / nullif(scale_n, 0) / 1000.0 AS kb_per_conversation  -- decimal kB, as the report
        FROM latest_stage_runs""",
}


def all_view_sql(metrics_dir: Path, con=None, base: str | None = None) -> list[str]:
    """Every view's statement. With a DuckDB connection, the files' columns are looked up first, so a
    store whose records predate a column still reads (that column as NULL). base: see _glob."""
    statements = [table_view_sql(metrics_dir, t, present_columns(con, metrics_dir, t, base) if con is not None
                                 else None, base) for t in TABLES]
    statements += [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in DERIVED.items()]
    return statements
