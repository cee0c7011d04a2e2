"""What the commands print: data frames as text tables, a run's stage records with their skip notes."""

from __future__ import annotations

import json

import pandas as pd

from kura_perf.meter import units
from kura_perf.report.fmt import scaled_factors, scaled_label, seconds
from kura_perf.store.record import StageRecord

STAGE_COLUMNS = ["stage", "status", "items_in", "items_out", "skipped_records", "wall_s", "jit_compile_s", "startup_s",
                 "stage_work_s", "setup_s", "cpu_s", "peak_mb",
                 "items_per_s", "model_items_per_s", "bytes_written", "n_clusters", "api_calls", "api_429s",
                 "inflight_max", "inflight_mean", "limit_share", "client_cpu", "cost_usd", "sim_speed_factor"]
# From an API stage's extra["api_concurrency"] (meter/api.py ConcurrencyStats.summary) into the table.
CONCURRENCY_COLUMNS = {"inflight_max": "inflight_max", "inflight_mean": "inflight_mean",
                       "limit_share": "limit_share", "client_cpu": "client_cpu_share"}

# Time that is not the stage's work (numba compile, first numba/umap import: inside wall_s; the backend's
# set-up: before it). Shown when a stage paid any, so a cold-cache wall time is never read as the work.
NOT_WORK = ("jit_compile_s", "startup_s", "setup_s")


def print_frame(df, empty: str | None = "(no rows)", **options) -> None:
    """A data frame as a text table, without its index; `empty` instead of an empty one (None: print it anyway).
    options: pandas display options without the "display." prefix (width, max_columns, float_format, ...)."""
    settings = [item for name, value in options.items() for item in (f"display.{name}", value)]
    if empty is not None and not len(df):
        print(empty)
        return
    if settings:
        with pd.option_context(*settings):
            print(df.to_string(index=False))
    else:
        print(df.to_string(index=False))


def print_records(rows) -> None:
    """The run's stage records (store rows, as a RunOutcome carries them) as a table, plus skip notes."""
    if rows is None:
        print("(stage records not shown: out of memory reading them back; they are in the store: kura-perf sql)")
        return
    if len(rows) == 0:
        print("(no stage records)")
        return
    records = [StageRecord.from_row(row) for row in rows]
    df = pd.DataFrame([record.as_row() for record in records])
    df["cpu_s"] = df["cpu_user_s"].fillna(0) + df["cpu_sys_s"].fillna(0)
    if "peak_rss_mb" in df:  # the meter's MiB, shown in decimal MB like every size we print (meter/units.py)
        df["peak_mb"] = pd.to_numeric(df["peak_rss_mb"], errors="coerce") * units.MIB / units.MB
    concurrency = [api_concurrency(record) for record in records]
    for column, key in CONCURRENCY_COLUMNS.items():
        df[column] = [c.get(key) if c else None for c in concurrency]
    cols = [c for c in STAGE_COLUMNS if c in df and df[c].notna().any()]
    if "skipped_records" in cols and not (df["skipped_records"].fillna(0) > 0).any():
        cols.remove("skipped_records")  # only worth a column when a lenient load skipped something
    cols = [c for c in cols if c not in NOT_WORK or (df[c].fillna(0) > 0).any()]
    if "stage_work_s" in cols and not (df["stage_work_s"].fillna(df["wall_s"]) < df["wall_s"]).any():
        cols.remove("stage_work_s")  # equal to wall_s everywhere: nothing was compiled or started
    print_frame(df[cols], empty=None, width=200, max_columns=30, float_format="{:.3f}".format)
    for line in skip_notes(records) + scaled_notes(records) + concurrency_notes(records):
        print(line)


def api_concurrency(record) -> dict | None:
    """The stage's in-flight and limit figures (extra["api_concurrency"]), None for a stage without API calls."""
    try:
        value = json.loads(record.extra or "{}").get("api_concurrency")
    except (TypeError, ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def concurrency_notes(records) -> list[str]:
    """One line per API stage: how many requests its client kept in flight and the share of the binding
    limit it reached; a stage bound by the client's own CPU says so, rather than pass for the endpoint's pace."""
    notes = []
    for record in records:
        c = api_concurrency(record)
        if not c:
            continue
        how = f"adaptive, up to {c.get('cap')}" if c.get("adaptive") else f"fixed at {c.get('cap')}"
        share = c.get("limit_share")
        limit = (f"{share:.0%} of its {'RPM' if c.get('binding_limit') == 'requests' else 'TPM'} limit"
                 if share is not None else "no rate limit known")
        if c.get("within_burst"):  # "0% of its limit" would read as idle: say the limit never bound, and the rate
            rate = c.get("rate_share")
            limit = ("the limit never bound (every request fitted its opening burst)"
                     + ("" if rate is None else f"; {c.get('requests_per_min'):,.0f}/min = {rate:.1%} of its RPM"))
        cpu = c.get("client_cpu_share")
        line = (f"{record.stage}: {c.get('inflight_max')} requests in flight at most, {c.get('inflight_mean')} "
                f"on average ({how}); {limit}; client event loop {'?' if cpu is None else f'{cpu:.0%}'} busy")
        if c.get("client_cpu_bound"):
            line += " -- client-CPU-bound: the client's own CPU, not the endpoint, set this stage's pace"
        if c.get("bound_by"):
            line += f"; bound by {c['bound_by']}"
        notes.append(line)
    return notes


def scaled_notes(records) -> list[str]:
    """One line per stage timed against a simulator running faster (or slower) than the modelled API:
    its wall time is scaled, not what a real endpoint would take. records: StageRecords."""
    notes = []
    for record in records:
        factors = scaled_factors([record])
        if factors:
            notes.append(f"{record.stage}: wall_s {seconds(record.wall_s)} is {scaled_label(factors)} "
                         f"(the simulator ran {factors[0]:g}x the modelled API's speed)")
    return notes


def skip_notes(records) -> list[str]:
    """One line per stage that skipped bad input records (a lenient profile), with the first problems:
    a lenient run must say what it left out, not only count it in the store. records: StageRecords."""
    notes = []
    for record in records:
        skipped = record.skipped_records
        if not skipped:  # None or 0 (a stored NaN is None in a StageRecord)
            continue
        try:
            problems = json.loads(record.extra or "{}").get("problems") or []
        except (TypeError, ValueError):
            problems = []
        notes.append(f"{record.stage}: skipped {int(skipped)} invalid input record(s) (lenient profile)")
        notes += [f"  - {problem}" for problem in problems[:3]]
        if len(problems) > 3 or skipped > len(problems[:3]):
            notes.append(f"  (first {min(len(problems), 3)} shown; all counted in stage_runs.skipped_records)")
    return notes
