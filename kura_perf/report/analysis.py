"""The figures every section shares, computed once: per-profile fits, storage per conversation, CPU use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from kura_perf.proposal import STORAGE_EMBEDDING_DIMENSION, STORAGE_KB_PER_CONVERSATION
from kura_perf.report import fmt
from kura_perf.report.data import ReportData
from kura_perf.report.fits import BASIS_ORDER, MEASURED, PROJECTED, UNKNOWN, Estimate, StageFit, fit_stages
from kura_perf.report.quality_trend import Collapse, collapses, quality_points
from kura_perf.stages.base import STAGES

PROJECTION_SCALES = (10_000, 100_000, 1_000_000)
HARDWARE_SCALES = (1_000, 10_000, 100_000, 1_000_000)
FIT_TARGETS = (100_000, 1_000_000)


@dataclass
class ProfileAnalysis:
    profile: str
    records: pd.DataFrame  # this profile's records on the report's host, every status
    fits: dict[str, StageFit]

    @cached_property
    def ok(self) -> pd.DataFrame:
        return self.records[self.records["status"] == "success"]

    @cached_property
    def scales(self) -> list[int]:
        return sorted(int(n) for n in self.ok["scale_n"].dropna().unique())

    @property
    def backend(self) -> str:
        """The backend that ran this profile's records ("?" without records): how tables label a profile."""
        known = self.records["backend"].dropna() if "backend" in self.records else []
        return known.iloc[0] if len(known) else "?"  # records without a backend (a damaged file's rows): unknown

    @property
    def can_fit(self) -> bool:
        return len(self.scales) >= 2

    def latest_at(self, n: int) -> pd.DataFrame:
        """The latest successful record of each stage at n conversations."""
        at = self.ok[self.ok["scale_n"] == n].sort_values("finished_at")
        return at.groupby("stage", as_index=False).tail(1)

    def storage_kb_per_conversation(self) -> dict[str, tuple[float, int]]:
        """Stage -> (kB per conversation, scale it was measured at): latest run at the largest scale with it.
        Decimal kB (1,000 bytes), as the proposal's §1.3 figures and fmt's one convention."""
        out: dict[str, tuple[float, int]] = {}
        ok = self.ok.dropna(subset=["bytes_written", "scale_n"])
        for stage, rows in ok.groupby("stage"):
            n = int(rows["scale_n"].max())
            latest = rows[rows["scale_n"] == n].sort_values("finished_at").iloc[-1]
            out[stage] = (float(latest["bytes_written"]) / n / 1000.0, n)
        return out

    def storage_bytes_at(self, stage: str, n: int) -> float | None:
        """Bytes `stage` wrote at n conversations (its latest successful run there), or None when it never
        completed there: what tells a measured storage cell from a projected one."""
        rows = self.ok[(self.ok["stage"] == stage) & (self.ok["scale_n"] == n)].dropna(subset=["bytes_written"])
        if rows.empty:
            return None
        return float(rows.sort_values("finished_at").iloc[-1]["bytes_written"])

    def embedding_dimension(self) -> int | None:
        rows = self.ok[(self.ok["stage"] == "embeddings") & self.ok["extra"].notna()]
        for text in reversed(rows["extra"].tolist()):
            try:
                dim = json.loads(text).get("dimension")
            except (ValueError, AttributeError):
                continue
            if dim:
                return int(dim)
        return None

    def cpu_utilisation(self) -> dict[str, float]:
        """Stage -> cores kept busy on average (CPU seconds / wall seconds) at the largest measured scale."""
        out = {}
        for stage, fit in self.fits.items():
            rows = self.ok[(self.ok["stage"] == stage) & (self.ok["scale_n"] == fit.largest_n)]
            cpu = rows["cpu_user_s"].fillna(0) + rows["cpu_sys_s"].fillna(0)
            wall = rows["wall_s"]
            valid = wall > 0
            if valid.any():
                out[stage] = float((cpu[valid] / wall[valid]).median())
        return out

    def api_bound(self) -> bool:
        calls = self.ok["api_calls"].fillna(0)
        return bool((calls > 0).any())

    @cached_property
    def projected(self) -> pd.DataFrame:
        """Stopped stages with a projected total wall time: the latest per stage and scale."""
        return stopped_with_projection(self.records)

    def projection_at(self, stage: str, n: int) -> Estimate | None:
        """The projected wall time of `stage` at n if it was stopped there with a projection (and never
        completed there since)."""
        rows = self.projected[(self.projected["stage"] == stage) & (self.projected["scale_n"] == n)]
        if rows.empty:
            return None
        r = rows.iloc[-1]
        return Estimate(float(r["projected_wall_s"]), PROJECTED, describe_projection(r))

    def stage_wall_at(self, stage: str, n: int) -> Estimate:
        """Measured if it completed at n; else projected from a stopped run at n; else fitted."""
        fit = self.fits.get(stage)
        estimate = fit.wall_at(n) if fit else Estimate(None, UNKNOWN, "never completed")
        if estimate.basis == MEASURED:
            return estimate
        return self.projection_at(stage, n) or estimate

    def stages(self) -> list[str]:
        """Stages with a fit or a projection, in pipeline order."""
        projected = set(self.projected["stage"]) if len(self.projected) else set()
        order = list(self.fits) + sorted(projected - set(self.fits))
        return sorted(order, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES))

    def projected_scales(self) -> list[int]:
        return sorted(int(n) for n in self.projected["scale_n"].dropna().unique()) if len(self.projected) else []

    def pipeline_wall_at(self, n: int) -> Estimate:
        """Sum of stage times at n, with the weakest basis among them; None when a stage cannot be projected."""
        estimates = [self.stage_wall_at(stage, n) for stage in self.stages()]
        return _combine(estimates, sum)

    def run_span_at(self, n: int) -> float | None:
        """Median wall of the complete runs at n, from the first stage's start to the last stage's end
        (seconds): the stages plus the gaps between them (Dagster's step hand-offs, reading upstream outputs).
        Records carry no run-level start, so the process start-up and imports before the first stage are
        not in it either. A run counts when every stage of the stages' sum succeeded in it; None when no
        run at n did."""
        needed = set(self.stages())
        at = self.ok[(self.ok["scale_n"] == n) & self.ok["run_id"].notna()]
        spans = []
        for _run, rows in at.groupby("run_id"):
            if not needed <= set(rows["stage"]) or rows["started_at"].isna().any() or rows["finished_at"].isna().any():
                continue
            spans.append((pd.Timestamp(rows["finished_at"].max()) - pd.Timestamp(rows["started_at"].min()))
                         .total_seconds())
        return float(pd.Series(spans).median()) if spans else None

    def pipeline_peak_at(self, n: int) -> Estimate:
        estimates = [fit.peak_at(n) for fit in self.fits.values()]
        return _combine(estimates, max)


PROJECTION_COLUMNS = ("items_done", "projected_wall_s", "projection_kind")


def stopped_with_projection(records: pd.DataFrame) -> pd.DataFrame:
    """Records of stages stopped before the end (a limit, a kill) that carry a projected total wall time,
    the latest per stage and scale, unless that stage completed at that scale afterwards. Empty when the
    store predates the projection columns."""
    if records.empty or any(c not in records.columns for c in PROJECTION_COLUMNS):
        return records.iloc[0:0]
    stopped = records[(records["status"] != "success") & records["projected_wall_s"].notna()]
    if stopped.empty:
        return stopped
    latest = stopped.sort_values("finished_at").groupby(["stage", "scale_n"], as_index=False).tail(1)
    ok = records[records["status"] == "success"]
    done_after = latest.apply(lambda r: bool(((ok["stage"] == r["stage"]) & (ok["scale_n"] == r["scale_n"])
                                              & (ok["finished_at"] > r["finished_at"])).any()), axis=1)
    return latest[~done_after.astype(bool)] if len(latest) else latest


def describe_projection(r) -> str:
    """'linear-in-items: 4,100/10,000 items in 600 s' — how a projected figure was made."""
    total = next((r.get(c) for c in ("items_total", "items_in", "scale_n") if not fmt.is_missing(r.get(c))), None)
    done = r.get("items_done")
    parts = [str(r.get("projection_kind") or "projected")]
    if not fmt.is_missing(done):
        parts.append(f"{int(done):,}/{int(total):,} items" if not fmt.is_missing(total) else f"{int(done):,} items")
    if not fmt.is_missing(r.get("wall_s")):
        parts.append(f"in {fmt.seconds(r['wall_s'])}")
    return parts[0] + (": " + " ".join(parts[1:]) if len(parts) > 1 else "")


def _combine(estimates: list[Estimate], how) -> Estimate:
    if not estimates or any(e.value is None for e in estimates):
        return Estimate(None, UNKNOWN, "needs every stage fitted (≥ 2 scales) or projected")
    basis = max((e.basis for e in estimates), key=BASIS_ORDER.index)
    return Estimate(how(e.value for e in estimates), basis)


@dataclass
class Analysis:
    data: ReportData
    profiles: dict[str, ProfileAnalysis] = field(default_factory=dict)

    @property
    def primary(self) -> ProfileAnalysis | None:
        name = self.data.primary_profile()
        return self.profiles.get(name) if name else None

    def quality_collapses(self) -> list[Collapse]:
        """Every measured quality collapse between scales, per profile (quality_trend.py's rule)."""
        out: list[Collapse] = []
        for name, pa in self.profiles.items():
            out += collapses(name, list(quality_points(self.data.levels, pa.ok, name).values()))
        return out


def analyse(data: ReportData) -> Analysis:
    analysis = Analysis(data)
    for profile in data.profiles():
        records = data.runs[data.runs["profile"] == profile]
        analysis.profiles[profile] = ProfileAnalysis(profile, records, fit_stages(records, data.stage_order))
    return analysis


def expected_embedding_kb(dimension: int | None) -> tuple[float, float]:
    """§1.3's embedding size is for 1536-d float32; rescale to the dimension actually used."""
    low, high = STORAGE_KB_PER_CONVERSATION["embeddings"]
    if not dimension:
        return low, high
    factor = dimension / STORAGE_EMBEDDING_DIMENSION
    return low * factor, high * factor


def kb_range(low: float, high: float, exact: bool = True) -> str:
    """"2–5 kB", or one figure when low == high: to the report's precision ("6.00 kB"), or as the proposal
    writes it ("6 kB") with exact=False."""
    if abs(low - high) < 1e-9:
        return fmt.kilobytes(low) if exact else f"{low:g} kB"
    return f"{low:g}–{high:g} kB"
