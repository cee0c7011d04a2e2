"""The proposal's §4.3 stress scenarios. Each runs real `kura-perf run` pipelines in a scratch home under
a real fault, lets the next command start in that home (`kura-perf db`: what turns a dead stage's trace
into a record), then judges what the home holds (outcome.py) and returns one stress_results row.

  memory_exhaustion     the pipeline under an OS memory cap (cgroup v2 memory.max, else RLIMIT_AS)
  disk_full             the data folder on a small filesystem (tmpfs, else RLIMIT_FSIZE)
  network_interruption  the API simulator goes down (503 to everything) mid-stage, for outage_s
  rate_limit_storm      the API simulator at a very low RPM with forced 429s
  concurrent_pipelines  2-8 pipelines at once on one home (half on one partition), a DuckDB reader attached
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kura_perf.experiments.stress.caps import cgroup_memory_available, memory_cap, small_filesystem
from kura_perf.experiments.stress.outcome import inspect_home
from kura_perf.experiments.stress.pipelines import Home, Pipeline, PipelineRun, run_args, run_command, wait_all
from kura_perf.profiles import get_profile
from kura_perf.settings.environment import SIMULATOR_URL_ENV
from kura_perf.simulator.config import SimulatorConfig
from kura_perf.simulator.process import SimulatorProcess
from kura_perf.store import query, refresh_database

API_PROFILE = "simulated-openai"
# Default memory caps, below what a scale-100 pipeline needs so that memory runs out: resident memory under
# a cgroup (a pipeline peaks at ~225-280 MB resident, ~100 MB of it shared library pages a cgroup may not
# charge to it), address space under RLIMIT_AS (~1-1.5 GB mapped once
# numpy, pyarrow and Dagster are loaded, though far less is resident).
RSS_CAP_MB = 160
ADDRESS_SPACE_CAP_MB = 1024
# Profiles the concurrent pipelines use in turn: every other one on the first partition (same files).
CONCURRENT_PROFILES = ("offline", "pca", "offline", "kmeans", "offline", "agglomerative", "offline", "pca")


@dataclass
class Settings:
    """What the scenarios run. The defaults are cheap (scale 100, two stages); raise them for a real probe."""

    scale: str = "100"
    stages: list[str] = field(default_factory=lambda: ["conversations", "summaries"])
    memory_mb: int | None = None  # the memory cap; None: below what a scale-100 pipeline needs (see RSS_CAP_MB)
    disk_kb: int = 160  # the small filesystem's size
    outage_s: float = 3.0  # how long the simulator answers 503 to everything
    outage_after_requests: int = 20  # the outage starts once the simulator has answered this many requests
    outage_rpm: int | None = None  # network_interruption: the simulator's chat/embeddings RPM (None: the profile's)
    outage_tpm: int | None = None  # network_interruption: the simulator's chat/embeddings TPM (None: the profile's)
    storm_rpm: int = 600  # chat requests per minute in the rate-limit storm
    # rate_limit_storm: the simulator's chat/embeddings TPM (None: the profile's). Our client paces itself to
    # the TPM the server announces, so at the profile's 200K a scale-100 storm takes ~30 s whatever its RPM.
    storm_tpm: int | None = None
    # The API scenarios measure fault handling, not how long a real endpoint takes: the simulator answers
    # this many times faster than each model's published latency (1 = real speed), so a 3 s outage meets
    # many requests; the records carry the factor (sim_speed_factor) and the report calls those times scaled.
    speed_factor: float = 10.0
    storm_429_rate: float = 0.3  # share of requests answered 429 regardless of the bucket
    pipelines: int = 4  # concurrent pipelines (2-8)
    timeout_s: float = 900.0  # per scenario; a pipeline still running then is stopped (and counted)
    keep_homes: bool = False  # keep each scenario's storage and Dagster instance (records and logs are kept)
    profiles_file: str | None = None  # the run settings' extra profiles (the pipelines started read the same)


@dataclass
class Context:
    root: Path  # <data root>/stress/<stress run id>/
    run_id: str
    settings: Settings

    def home(self, scenario: str) -> Home:
        base = self.root / scenario
        return Home(data=base / "home", dagster=base / "dagster_home", logs=base / "logs")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _row(ctx: Context, scenario: str, home: Home, runs: list[PipelineRun], started: datetime, t0: float,
         parameters: dict, cap_method: str, notes: list[str], profile: str) -> dict:
    findings = inspect_home(home.data, runs)
    outcome = findings.outcome(runs)
    exit_codes = [r.exit_code for r in runs]
    message = "; ".join([*notes, findings.message(outcome)])
    peaks = [r.peak_rss_mb for r in runs if r.peak_rss_mb is not None]
    return {
        "scenario": scenario,
        "parameters": json.dumps({**parameters, "stages": ctx.settings.stages, "scale": ctx.settings.scale},
                                 sort_keys=True),
        "outcome": outcome,
        "exit_code": next((c for c in exit_codes if c != 0), 0) if exit_codes else None,
        "pipelines": len(runs),
        "records_expected": findings.records_expected,
        "records_found": findings.records_found,
        "orphans": len(findings.orphans),
        "partial_outputs": len(findings.partial_outputs),
        "wrong_figures": len(findings.wrong_figures),
        "tracebacks": findings.tracebacks,
        "cap_method": cap_method,
        "message": message[:2000],
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": max(peaks) if peaks else None,
        "started_at": started,
        "finished_at": _now(),
        "scale": ctx.settings.scale,
        "profile": profile,
        "home": str(home.data.parent),
    }


def _note_running_markers(home: Home, runs: list[PipelineRun]) -> None:
    """Before the next command turns them into records: which pipelines left a stage marked running
    (data/metrics_running/<run id>/<stage>.json, written before a stage starts)."""
    running = home.data / "metrics_running"
    by_run: dict[str, int] = {}
    if running.is_dir():
        for marker in running.glob("*/*.json"):
            key = marker.parent.name.replace("-", "")
            by_run[key] = by_run.get(key, 0) + 1
    unknown = [r for r in runs if not r.run_id]
    for run in runs:
        if run.run_id:
            run.running_markers = by_run.pop(run.run_id.replace("-", ""), 0)
    if len(unknown) == 1:
        unknown[0].running_markers = sum(by_run.values())


def _next_command(home: Home, runs: list[PipelineRun] | None = None) -> None:
    """Start the next command in the home, as a user would after the fault: it recovers stranded records
    (and, where the store marks stages `running`, turns dead ones into `died`)."""
    if runs is not None:
        _note_running_markers(home, runs)
    run_command(home, ["db"], "next-command", timeout_s=300)


def _tidy(home: Home, settings: Settings) -> None:
    if settings.keep_homes:
        return
    shutil.rmtree(home.data / "storage", ignore_errors=True)
    shutil.rmtree(home.dagster, ignore_errors=True)


def memory_exhaustion(ctx: Context) -> dict:
    s, home, started, t0 = ctx.settings, ctx.home("memory_exhaustion"), _now(), time.perf_counter()
    notes = []
    limit = s.memory_mb or (RSS_CAP_MB if cgroup_memory_available() else ADDRESS_SPACE_CAP_MB)
    with memory_cap(limit) as cap:
        pipeline = Pipeline(home, run_args(s.scale, "offline", s.stages), "pipeline", preexec=cap.preexec,
                            stages=s.stages)
        runs = [pipeline.wait(s.timeout_s)]
        events = cap.events()
    if events.get("oom_kill"):
        notes.append(f"the OOM killer ended {events['oom_kill']} process(es) at the cgroup's limit")
    if runs[0].exit_code is not None and runs[0].exit_code < 0:
        notes.append(f"pipeline killed by signal {-runs[0].exit_code}")
    _next_command(home, runs)
    row = _row(ctx, "memory_exhaustion", home, runs, started, t0, {"memory_mb": limit}, cap.method, notes,
               "offline")
    _tidy(home, s)
    return row


def disk_full(ctx: Context) -> dict:
    s, home, started, t0 = ctx.settings, ctx.home("disk_full"), _now(), time.perf_counter()
    with small_filesystem(home.data, s.disk_kb) as cap:
        pipeline = Pipeline(home, run_args(s.scale, "offline", s.stages), "pipeline", preexec=cap.preexec,
                            stages=s.stages)
        runs = [pipeline.wait(s.timeout_s)]
        free_kb = shutil.disk_usage(home.data).free // 1024
        kept = _kept_records(home)
        # The user frees space and starts the next command: records kept back while the disk was full
        # must reach the store now (a record may be late, never lost).
        cap.lift()
        _next_command(home, runs)
        notes = [f"{free_kb} KB free after the run, {kept} record(s) kept in running markers; "
                 "then the disk was given room and the next command started"]
        # Judged before the filesystem goes away: its files vanish with the unmount. Records are copied out.
        row = _row(ctx, "disk_full", home, runs, started, t0, {"disk_kb": s.disk_kb}, cap.method, notes, "offline")
        _copy_records_out(home)
    _tidy(home, s)
    return row


def _kept_records(home: Home) -> int:
    """Records a full disk kept back in their stage's running marker (liveness.Heartbeat.keep)."""
    count = 0
    for marker in (home.data / "metrics_running").glob("*/*.json"):
        try:
            count += bool(json.loads(marker.read_text()).get("record"))
        except (OSError, ValueError):
            pass
    return count


def _copy_records_out(home: Home) -> None:
    """Keep the scenario's stage records beside its logs (the tmpfs they are on is about to go)."""
    metrics = home.data / "metrics"
    if metrics.is_dir():
        shutil.copytree(metrics, home.logs / "metrics", dirs_exist_ok=True)


def _api_scenario(ctx: Context, scenario: str, changes: dict, on_tick: Callable | None, parameters: dict) -> dict:
    s, home, started, t0 = ctx.settings, ctx.home(scenario), _now(), time.perf_counter()
    config = SimulatorConfig.from_dict(get_profile(API_PROFILE, s.profiles_file).api.simulator).updated(
        {"speed_factor": s.speed_factor, **changes})
    notes: list[str] = []
    with SimulatorProcess(config) as sim:
        pipeline = Pipeline(home, run_args(s.scale, API_PROFILE, s.stages), "pipeline",
                            env={SIMULATOR_URL_ENV: sim.base_url}, stages=s.stages)
        tick = (lambda: on_tick(sim, notes)) if on_tick else None
        runs = [pipeline.wait(s.timeout_s, tick=tick)]
        log = sim.log()
    statuses = {}
    for entry in log.get("entries", []):
        statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + entry["count"]
    notes.append(f"simulator answered {log.get('requests', 0)} requests ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))})")
    calls = _recorded_api_calls(home)
    if calls is not None:
        notes.append(f"records count {calls} API calls")
    _next_command(home, runs)
    row = _row(ctx, scenario, home, runs, started, t0, parameters, "API simulator", notes, API_PROFILE)
    _tidy(home, s)
    return row


def _recorded_api_calls(home: Home) -> int | None:
    if not (home.data / "metrics").is_dir():
        return None
    df = query(home.data / "metrics", "SELECT sum(api_calls) AS n FROM stage_runs")
    value = df["n"].iloc[0]
    return None if value != value or value is None else int(value)


def network_interruption(ctx: Context) -> dict:
    s = ctx.settings
    fired: list[float] = []

    def tick(sim, notes: list[str]) -> None:
        if fired:
            return
        answered = sim.log().get("requests", 0)
        if answered >= s.outage_after_requests:
            sim.outage(s.outage_s)
            fired.append(time.monotonic())
            notes.append(f"outage of {s.outage_s:g} s started after {answered} requests")

    limits = {**({"rpm": s.outage_rpm} if s.outage_rpm else {}), **({"tpm": s.outage_tpm} if s.outage_tpm else {})}
    changes = {"chat": limits, "embeddings": limits} if limits else {}
    return _api_scenario(ctx, "network_interruption", changes, tick,
                         {"outage_s": s.outage_s, "outage_after_requests": s.outage_after_requests,
                          "rpm": s.outage_rpm or "profile", "tpm": s.outage_tpm or "profile"})


def rate_limit_storm(ctx: Context) -> dict:
    s = ctx.settings
    limits = {"rpm": s.storm_rpm, **({"tpm": s.storm_tpm} if s.storm_tpm else {})}
    changes = {"chat": limits, "embeddings": limits, "burst_s": 2.0,
               "rate_limit_rate": s.storm_429_rate, "forced_retry_after_s": 0.2}
    return _api_scenario(ctx, "rate_limit_storm", changes, None,
                         {"rpm": s.storm_rpm, "tpm": s.storm_tpm or "profile", "rate_limit_rate": s.storm_429_rate,
                          "burst_s": 2.0})


def concurrent_pipelines(ctx: Context) -> dict:
    import duckdb

    s, home, started, t0 = ctx.settings, ctx.home("concurrent_pipelines"), _now(), time.perf_counter()
    n = max(2, min(8, s.pipelines))
    profiles = [CONCURRENT_PROFILES[i] for i in range(n)]
    database = home.data / "metrics.duckdb"
    refresh_database(home.data / "metrics", database)
    reader = duckdb.connect(str(database), read_only=True)  # an analyst's shell, open all along
    try:
        pipelines = [Pipeline(home, run_args(s.scale, profile, s.stages), f"pipeline-{i}", stages=s.stages)
                     for i, profile in enumerate(profiles)]
        runs = wait_all(pipelines, s.timeout_s)
    finally:
        reader.close()
    _next_command(home, runs)
    parameters = {"pipelines": n, "profiles": profiles, "duckdb_reader": True}
    row = _row(ctx, "concurrent_pipelines", home, runs, started, t0, parameters, "shared home", [],
               ",".join(dict.fromkeys(profiles)))
    _tidy(home, s)
    return row


SCENARIOS: dict[str, Callable[[Context], dict]] = {
    "memory_exhaustion": memory_exhaustion,
    "disk_full": disk_full,
    "network_interruption": network_interruption,
    "rate_limit_storm": rate_limit_storm,
    "concurrent_pipelines": concurrent_pipelines,
}


def settings_dict(settings: Settings) -> dict:
    return asdict(settings)
