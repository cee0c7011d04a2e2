"""What the report reads from the metrics store, narrowed to one host.

Figures from different machines are not comparable (a scaling curve mixing a laptop and a server
is meaningless), so the report picks the host with the most successful stage records and says how
many records from other hosts it left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from kura_perf.report import fmt
from kura_perf.stages.base import STAGES
from kura_perf.store import query

DEFAULT_PROFILE = "offline"


@dataclass(frozen=True)
class Host:
    fingerprint: str
    cpu: str
    cores: int | None
    ram_gb: float | None
    os: str

    def describe(self) -> str:
        cores = f"{self.cores} cores" if self.cores else "cores unknown"
        ram = f"{fmt.gibibytes_as_gb(self.ram_gb)} RAM" if self.ram_gb else "RAM unknown"  # recorded in GiB
        return f"{self.cpu or 'unknown CPU'}, {cores}, {ram} (host {self.fingerprint})"


@dataclass
class ReportData:
    metrics_dir: Path
    host: Host | None
    runs: pd.DataFrame  # stage_runs of this host, every status
    sweeps: pd.DataFrame  # sweep_results of this host (or of all hosts when this one has none)
    checks: pd.DataFrame  # check_results of this host
    total_records: int  # stage_runs on every host
    other_host_records: int
    stage_order: list[str] = field(default_factory=lambda: list(STAGES))
    stress: pd.DataFrame = field(default_factory=pd.DataFrame)  # stress_results, every host
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)  # quality_by_level view, this host

    @property
    def empty(self) -> bool:
        return self.runs.empty

    @cached_property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "success"]

    def profiles(self) -> list[str]:
        """Profiles with successful records, the default first, then by how many scales they cover."""
        ok = self.ok
        if ok.empty:
            return sorted(self.runs["profile"].dropna().unique())
        counts = ok.groupby("profile")["scale_n"].nunique().sort_values(ascending=False)
        ordered = list(counts.index)
        if DEFAULT_PROFILE in ordered:
            ordered.remove(DEFAULT_PROFILE)
            ordered.insert(0, DEFAULT_PROFILE)
        return ordered

    def primary_profile(self) -> str | None:
        profiles = self.profiles()
        return profiles[0] if profiles else None

    def stages_present(self, df: pd.DataFrame | None = None) -> list[str]:
        df = self.runs if df is None else df
        present = set(df["stage"].dropna())
        return [s for s in self.stage_order if s in present] + sorted(present - set(self.stage_order))


def _choose_host(runs: pd.DataFrame) -> str | None:
    if runs.empty:
        return None
    ok = runs[runs["status"] == "success"]
    pool = ok if not ok.empty else runs
    ranked = (pool.groupby("host_fingerprint", dropna=False)
              .agg(records=("record_id", "count"), last=("finished_at", "max"))
              .sort_values(["records", "last"], ascending=False))
    return ranked.index[0]


def _host_of(runs: pd.DataFrame) -> Host | None:
    if runs.empty:
        return None
    row = runs.sort_values("finished_at").iloc[-1]
    cores = None if fmt.is_missing(row.get("host_cores")) else int(row["host_cores"])
    ram = None if fmt.is_missing(row.get("host_ram_gb")) else float(row["host_ram_gb"])
    return Host(str(row.get("host_fingerprint") or "unknown"), str(row.get("host_cpu") or ""), cores, ram,
                str(row.get("host_os") or ""))


def _same_host(df: pd.DataFrame, fingerprint) -> pd.Series:
    if fingerprint is None or (isinstance(fingerprint, float) and pd.isna(fingerprint)):
        return df["host_fingerprint"].isna()
    return df["host_fingerprint"] == fingerprint


def current_configuration(df: pd.DataFrame) -> pd.DataFrame:
    """Each profile's records of its configuration as last run. A profile whose parameters changed
    (another profile_hash under the same name) must not have its old and new runs averaged into one
    figure: the earlier configuration's records are history, left out of the tables."""
    if df is None or df.empty or "profile_hash" not in df or "profile" not in df:
        return df
    order = "finished_at" if "finished_at" in df else None
    ordered = df.sort_values(order) if order else df
    latest = ordered.dropna(subset=["profile_hash"]).groupby("profile")["profile_hash"].last()
    keep = df["profile_hash"].isna() | (df["profile_hash"] == df["profile"].map(latest))
    return df[keep]


def load_report_data(metrics_dir: Path) -> ReportData:
    """Every record the report needs, from the store's views, narrowed to the best-covered host."""
    # Successful runs with metering off (`--no-meter`, used to measure the meter's cost) carry no
    # memory figures and a different timing regime: they never stand for a partition here.
    # stage_runs_contended: the records plus `contended` (another run overlapped on the same host).
    all_runs = query(metrics_dir, "SELECT * FROM stage_runs_contended WHERE coalesce(metered, true) "
                                  "OR status <> 'success' ORDER BY started_at, finished_at")
    stress = query(metrics_dir, "SELECT * FROM stress_results ORDER BY started_at")
    sweeps = query(metrics_dir, "SELECT * FROM sweep_results ORDER BY recorded_at")
    checks = query(metrics_dir, "SELECT * FROM check_results ORDER BY checked_at")
    levels = query(metrics_dir, "SELECT * FROM quality_by_level")
    fingerprint = _choose_host(all_runs)
    runs = all_runs[_same_host(all_runs, fingerprint)] if len(all_runs) else all_runs
    runs = current_configuration(runs).reset_index(drop=True) if len(runs) else runs
    host_sweeps = sweeps[_same_host(sweeps, fingerprint)] if len(sweeps) else sweeps
    return ReportData(
        metrics_dir=Path(metrics_dir),
        host=_host_of(runs),
        runs=runs,
        sweeps=(host_sweeps if len(host_sweeps) else sweeps).reset_index(drop=True),
        checks=(checks[_same_host(checks, fingerprint)] if len(checks) else checks).reset_index(drop=True),
        total_records=len(all_runs),
        other_host_records=len(all_runs) - len(runs),
        stress=stress,
        levels=(current_configuration(levels[_same_host(levels, fingerprint)]) if len(levels)
                else levels).reset_index(drop=True),
    )


def describe_runs(df: pd.DataFrame, time_column: str = "started_at") -> str:
    """'3 runs, 2025-01-02 → 2025-01-05, code a1b2c3d, e4f5a6b': which runs a section is built from."""
    if df is None or df.empty:
        return "no runs"
    n_runs = df["run_id"].nunique() if "run_id" in df else len(df)
    times = pd.to_datetime(df[time_column]).dropna() if time_column in df else pd.Series(dtype="datetime64[ns]")
    if len(times):
        first, last = times.min().strftime("%Y-%m-%d %H:%M"), times.max().strftime("%Y-%m-%d %H:%M")
        span = f"{first} UTC" if first == last else f"{first} → {last} UTC"
    else:
        span = "dates unknown"
    versions = [str(v)[:12] for v in df["code_version"].dropna().unique()] if "code_version" in df else []
    shown = ", ".join(versions[:4]) + (f" (+{len(versions) - 4} more)" if len(versions) > 4 else "")
    code = f"code {shown}" if versions else "code version unknown"
    return f"{n_runs} run{'s' if n_runs != 1 else ''}, {span}, {code}"
