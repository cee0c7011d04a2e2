"""`kura-perf matrix` (and `make matrix`): run the whole test matrix, then print the filled §1.2 table.

Each partition (profile × scale) runs as its own `kura-perf run` process, one after another, so a
partition that fails, is stopped at a limit, or takes its process down with it (an OOM kill) is
recorded and the rest still run. Stage limits come from each profile (kura-tier5 stops a stage at
3 h). At the end the table is printed from the store with host, date and code version: the same
table function (`report.tables.published_matrix`) that `kura-perf publish` builds the README's
"Measured" section with, and it is also written to <KURA_PERF_HOME>/matrix.md.

One partition at a time, never two side by side: two partitions on one box disturb each other's
timings (the quiet-box protocol, issue 19). With wait_quiet, before each partition the matrix samples
the other processes' load (meter/host_load.py) and waits until it is below the contended threshold,
printing a line while it waits; after quiet_timeout_s it runs anyway, and the records say contended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text
from kura_perf.meter.host import code_version
from kura_perf.meter.host_load import CONTENDED_SHARE, wait_until_quiet
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.report.analysis import analyse
from kura_perf.report.data import load_report_data
from kura_perf.report.tables import published_matrix
from kura_perf.scales import scale_count
from kura_perf.settings.run import RunSettings
from kura_perf.store.liveness import reap

DEFAULT_SCALES = ("100", "1k", "5k", "10k", "50k", "100k")
DEFAULT_PROFILES = ("offline", "kura-tier5")


def partition_command(scale: str, profile: str, profiles_file: str | None) -> list[str]:
    command = [sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", scale, "--profile", profile]
    return command + (["--profiles", profiles_file] if profiles_file else [])


def run_partition_process(scale: str, profile: str, profiles_file: str | None, log_path: Path) -> int:
    """One partition in a child process (its own session, so Ctrl-C here stops it and its helpers)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        child = subprocess.Popen(partition_command(scale, profile, profiles_file), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return child.wait()
        except BaseException:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            raise


def matrix_markdown(metrics_dir: Path, profiles: list[str], scales: list[str]) -> str:
    """The filled matrix as Markdown, headed by host, date and code version."""

    data = load_report_data(metrics_dir)
    if data.empty:
        return "(no stage records yet: run the matrix first)"
    table = published_matrix(analyse(data), profiles, [scale_count(s) for s in scales])
    runs = data.runs[data.runs["profile"].isin(profiles)]
    versions = sorted({str(v) for v in runs["code_version"].dropna()}) if len(runs) else []
    when = (f"{runs['started_at'].min():%Y-%m-%d} to {runs['finished_at'].max():%Y-%m-%d}" if len(runs)
            else datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    header = [f"Host: {data.host.describe() if data.host else 'unknown'}",
              f"Dates (UTC): {when}; table printed {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
              f"Code version(s) measured: {', '.join(versions) or 'unknown'} (now: {code_version()})",
              f"Profiles: {', '.join(profiles)}; scales: {', '.join(scales)}"]
    return "\n".join(f"- {line}" for line in header) + "\n\n" + table.to_markdown() + "\n\n" + table.caption


def run_matrix(run_settings: RunSettings, profiles: list[str], scales: list[str], *, table_only: bool = False,
               echo=print, wait_quiet: bool = False, quiet_timeout_s: float = 600.0,
               quiet_threshold: float = CONTENDED_SHARE, wait=wait_until_quiet) -> str:
    """Run each profile × scale partition in its own process (unless table_only), then return the filled
    matrix as Markdown (also written to <data root>/matrix.md). Every input is checked first: a typo, a
    bad value or a missing data file fails now, not hours into the matrix."""
    for scale in scales:
        scale_count(scale)
    for name in profiles:
        if table_only:
            run_settings.profile(name)
        else:
            check_run_inputs(run_settings, name)
    paths = run_settings.paths
    if not table_only:
        logs = paths.root / "matrix-logs"
        outcomes = []
        for profile in profiles:
            for scale in scales:
                log_path = logs / f"{profile}-{scale}.log"
                if wait_quiet:
                    wait(threshold=quiet_threshold, timeout_s=quiet_timeout_s, echo=echo)
                echo(f"[{datetime.now(timezone.utc):%H:%M:%S}] {profile} × {scale} ... (log {log_path})")
                t0 = time.perf_counter()
                # Blocks until the partition's process has ended: the next one starts on a box it left.
                code = run_partition_process(scale, profile, run_settings.profiles_file, log_path)
                took = time.perf_counter() - t0
                outcome = "ok" if code == 0 else f"exit {code} (recorded; see the log)"
                outcomes.append((profile, scale, outcome))
                echo(f"    {outcome} after {took:,.0f} s")
        failed = [o for o in outcomes if o[2] != "ok"]
        echo(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} partitions completed; "
             f"{len(failed)} failed or stopped (their records are in the table)\n")

    reap(paths.root)  # died records of a partition whose process was killed (no later command would reap them)
    text = matrix_markdown(paths.metrics, list(profiles), list(scales))
    out = paths.root / "matrix.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text + "\n")
    return text
