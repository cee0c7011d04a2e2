"""Where each backend breaks, named (issue 19 item 4): per profile, at 100K and 1M, which stage breaks first
and on what resource, with the evidence; and the largest scale that fits each of the proposal's machines.

A stage breaks at n conversations on

  a measured stop  a record of it at a scale <= n that did not finish (STOPPED: breaking_point = a memory or
                   time guard or memory exhaustion; interrupted; died = killed, by the OOM killer or a kill):
                   the break is measured at that scale, whatever the fits say, and named with its status and
                   cause (and its projected wall, labelled, when the record has one). A stop the same stage
                   later got past (a success at that scale or a larger one) is not a break;
  memory           its peak RSS at n over the RAM of the proposal's machine for n (§3.2, proposal.hardware_tier:
                   64 GB at 100K and beyond; the machine's whole RAM, no headroom: report/hardware.py adds that
                   when it sizes a machine);
  API calls        the waiting its API calls need at n under the profile's limits over its time bound, by
                   `kura-perf predict`'s model (experiments/predict.py: the largest of latency x waves, calls
                   over RPM, tokens over TPM; counts scaled from the profile's largest measured run);
  time             its work time at n over its time bound.

The time bound is the profile's stage_timeout_s, and never more than PRACTICAL_BOUND_S (24 h): a stage that
needs more than a day is broken for an analysis re-run as conversations come in, timeout or none.

A figure at n is the measured median where n was measured; elsewhere a power law fitted over the stage's
MEASURED scales only (successful records, never a projected cell: report/fits.py), and only with at least
MIN_FIT_SCALES of them: with fewer the cell says "not enough measured scales" and guesses nothing. A time past
the largest measured scale is the larger of that fit and the two tails (the slope of work time and of CPU
between the two largest scales: StageFit.time_projection), because small scales are overhead and waiting and
hide a super-linear CPU term; a break or slowest time a tail gave names it, and the evidence shows both tail
exponents and flags a super-linear CPU tail, its own stage's and any other figured stage's. The first
break is the earliest stage in pipeline order that breaks: a run never reaches the stages after it.

The tiers answer: for 4 / 16 / 64 GB, the largest measured scale whose peak (the largest stage peak) fits,
and past the largest measured scale, where the fitted peak crosses the tier (labelled projected; needs every
stage fitted over MIN_FIT_SCALES measured scales; capped below a measured stop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.proposal import HARDWARE_TIERS, hardware_tier
from kura_perf.report import fmt
from kura_perf.report.analysis import Analysis, ProfileAnalysis
from kura_perf.report.fits import (
    MEASURED,
    MIN_FIT_SCALES,
    PROJECTED,
    SUPERLINEAR_CPU,
    UNKNOWN,
    Estimate,
    StageFit,
    fit_power_law,
)
from kura_perf.report.tables import Cell, Table
from kura_perf.stages.base import STAGES

PRACTICAL_BOUND_S = 24 * 3600.0
BREAK_SCALES = (100_000, 1_000_000)
STOPPED = ("breaking_point", "interrupted", "died", "timeout")
PROJECTION_CEILING_N = 100_000_000  # a fitted tier crossing is not searched past 100M conversations
NOT_ENOUGH = "not enough measured scales"
META_STAGE = "meta_clusters"
CAUSE_CHARS = 160


def tier_mib(ram_gb: float) -> float:
    """A tier's decimal GB in the MiB the meter records peaks in."""
    return ram_gb * 10**9 / fmt.MIB


@dataclass(frozen=True)
class StageBreak:
    stage: str
    resource: str  # "measured stop" | "memory" | "API calls" | "time"
    detail: str
    basis: str  # measured | interpolated | extrapolated (report/fits.py)
    scale_n: int | None = None  # a measured stop: the scale it stopped at

    def text(self) -> str:
        return f"{self.stage}: {self.resource}: {self.detail}"


@dataclass
class Verdict:
    """One profile at one scale."""

    profile: str
    backend: str
    n: int
    first: StageBreak | None
    unsupported: list[str]  # "clusters (has 2)": stages without a figure at n
    later_stops: list[str]  # measured stops of stages after the first break: evidence the run never reaches
    time: Cell
    memory: Cell
    api: Cell
    evidence: Cell
    meta_calls: Cell

    def first_cell(self) -> Cell:
        if self.first is not None:
            kind = "bad" if self.first.basis == MEASURED else self.first.basis
            prefix = "measured break at " + fmt.conversations(self.first.scale_n) + ": " \
                if self.first.resource == "measured stop" else ""
            tail = f" (earlier stages without a figure: {', '.join(self.unsupported)})" if self.unsupported else ""
            if self.later_stops:
                tail += f"; later, measured: {', '.join(self.later_stops)}"
            return Cell(prefix + self.first.text() + tail, kind)
        if self.unsupported:
            return Cell(f"{NOT_ENOUGH} (needs ≥{MIN_FIT_SCALES}): {', '.join(self.unsupported)}", UNKNOWN)
        return Cell("no stage breaks: every figure within its bound and the proposal's machine", "good")


def supported(fit: StageFit | None) -> bool:
    """A stage's fits may be used beyond its measured scales: at least MIN_FIT_SCALES measured scales."""
    return fit is not None and fit.wall is not None and len(fit.measured) >= MIN_FIT_SCALES


def _scales_of(fit: StageFit | None) -> int:
    return 0 if fit is None else len(fit.measured)


def time_bound_s(stage_timeout_s: float | None) -> tuple[float, str]:
    """(seconds, what they are): the profile's stage timeout, capped at the practical bound."""
    if stage_timeout_s and stage_timeout_s < PRACTICAL_BOUND_S:
        return float(stage_timeout_s), f"stage_timeout_s {fmt.seconds(stage_timeout_s)}"
    return PRACTICAL_BOUND_S, f"practical bound {fmt.seconds(PRACTICAL_BOUND_S)}"


# -- measured stops --------------------------------------------------------------------------------

def measured_stop(pa: ProfileAnalysis, stage: str, n: int):
    """The stage's earliest-scale record at a scale <= n that did not finish, unless the stage succeeded at
    that scale or a larger one (it got past it); None when there is none."""
    rows = pa.records[(pa.records["stage"] == stage) & pa.records["status"].isin(STOPPED)
                      & (pa.records["scale_n"] <= n)]
    if rows.empty:
        return None
    done = pa.ok[pa.ok["stage"] == stage]["scale_n"]
    rows = rows[[not (done >= s).any() for s in rows["scale_n"]]]
    if rows.empty:
        return None
    return rows.sort_values(["scale_n", "finished_at"]).iloc[0]


def stop_resource(r) -> str:
    """What a stopped record ran out of, from its status and message."""
    text = f"{r.get('error_type') or ''} {r.get('error_message') or ''}".lower()
    if "memory" in text or "oom" in text:
        return "memory"
    if "time limit" in text or "timeout" in text or r.get("status") == "timeout":
        return "time"
    if r.get("status") == "died":
        return "killed (no cause recorded: the OOM killer or a kill)"
    return str(r.get("status"))


def describe_stop(r) -> str:
    cause = f"{r.get('status')}, {stop_resource(r)}"
    message = " ".join(str(r.get(c)) for c in ("error_type", "error_message") if not fmt.is_missing(r.get(c)))
    if message:
        cause += f": {message}"
    if len(cause) > CAUSE_CHARS:
        cause = cause[:CAUSE_CHARS - 1] + "…"
    if not fmt.is_missing(r.get("peak_rss_mb")):
        cause += f"; peak {fmt.megabytes(r['peak_rss_mb'])}"
    if not fmt.is_missing(r.get("projected_wall_s")):
        cause += f"; projected wall {fmt.seconds(r['projected_wall_s'])} ({r.get('projection_kind') or 'projected'})"
    return cause


# -- API waiting (kura-perf predict's model) -------------------------------------------------------

def _shipped_profile(name: str):
    from kura_perf.profiles import load_profiles

    try:
        return load_profiles().get(name)
    except KuraPerfError:
        return None


def api_waiting(pa: ProfileAnalysis, n: int, profile) -> dict[str, tuple[float, int, str]]:
    """Stage -> (API seconds, calls, which limit binds) at n by predict's model, its counts from the profile's
    successful records where they have calls."""
    from kura_perf.experiments.predict import predict

    ok = pa.ok[pa.ok["api_calls"].fillna(0) > 0]
    records = [{"stage": r["stage"], "scale_n": int(r["scale_n"]), "api_calls": int(r["api_calls"]),
                "tokens_in": int(0 if fmt.is_missing(r.get("tokens_in")) else r["tokens_in"]),
                "tokens_out": int(0 if fmt.is_missing(r.get("tokens_out")) else r["tokens_out"])}
               for r in ok.to_dict("records")]
    out: dict[str, tuple[float, int, str]] = {}
    for p in predict(profile, n, records):
        seconds, calls, binds = out.get(p.stage, (0.0, 0, p.binds))
        out[p.stage] = (seconds + p.time_s, calls + p.calls, binds if seconds >= p.time_s else p.binds)
    return out


# -- the meta-cluster loop's calls -----------------------------------------------------------------

def meta_calls(pa: ProfileAnalysis) -> pd.Series:
    """Median API calls of the meta_clusters stage per measured scale (the naming loop's calls)."""
    rows = pa.ok[(pa.ok["stage"] == META_STAGE) & pa.ok["api_calls"].notna()]
    return rows.groupby("scale_n")["api_calls"].median().sort_index()


def meta_calls_cell(pa: ProfileAnalysis, n: int) -> Cell:
    calls = meta_calls(pa)
    if calls.empty or (calls <= 0).all():
        return Cell("no API calls recorded" if not calls.empty else fmt.MISSING, "" if not calls.empty else UNKNOWN)
    series = " / ".join(f"{int(v):,}" for v in calls) + " at " + " / ".join(fmt.conversations(s) for s in calls.index)
    if len(calls) < MIN_FIT_SCALES:
        return Cell(f"{series}; at {fmt.conversations(n)}: {NOT_ENOUGH} (has {len(calls)})")
    if n in calls.index:
        return Cell(f"{series} (measured)")
    law = fit_power_law(calls.index, calls.values)
    return Cell(f"{series}: {law.describe()}; ≈ {round(law.predict(n)):,} at {fmt.conversations(n)}", law.basis(n))


# -- one profile at one scale ----------------------------------------------------------------------

def _stages(pa: ProfileAnalysis) -> list[str]:
    stopped = set(pa.records[pa.records["status"].isin(STOPPED)]["stage"].dropna())
    names = set(pa.fits) | stopped
    return sorted(names, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES))


def _evidence(fit: StageFit | None, stage: str) -> Cell:
    if fit is None:
        return Cell(f"{stage}: never completed at any scale", UNKNOWN)
    parts = [f"{stage}: time {fit.wall.describe()}" if fit.wall else f"{stage}: time — (one scale)"]
    if supported(fit) and (tail := fit.tail_text()):
        parts.append(tail)
    law = fit.growth or fit.peak
    parts.append(f"peak growth {law.describe()}" if law else "peak growth — (one scale)")
    largest = fit.largest_n
    parts.append(f"peak {fmt.megabytes(fit.peak_at(largest).value)} at {fmt.conversations(largest)} (measured)")
    return Cell("; ".join(parts))


def _superlinear_cpu_elsewhere(pa: ProfileAnalysis, walls: dict, evidence_stage: str | None) -> str:
    """The other figured stages whose CPU tail is super-linear: the evidence names one stage (the breaking or
    the slowest), and a quadratic step in another one must not hide behind it."""
    steep = [(stage, pa.fits[stage].cpu_tail) for stage in walls if stage != evidence_stage
             and supported(pa.fits.get(stage)) and pa.fits[stage].cpu_tail is not None
             and pa.fits[stage].cpu_tail.exponent > SUPERLINEAR_CPU]
    return ", ".join(f"{stage} ({fmt.exponent(tail.exponent)}, {tail.span()})" for stage, tail in steep)


@dataclass(frozen=True)
class ProbedStageTime:
    """A stage's time at a scale where it could not be watched to its end, from its own steps measured there
    (`kura-perf kura-probe`: the CPU steps measured, the API waiting projected; results/probes.py).
    lower_bound: a step was stopped at its limit, so the stage takes at least `seconds`."""

    stage: str
    scale_n: int  # where it was probed (a larger scale takes at least as long)
    seconds: float
    lower_bound: bool
    how: str  # what was measured and what projected, for the cell


def _probed_break(probed: ProbedStageTime, n: int, bound_s: float, bound_text: str) -> StageBreak | None:
    if probed.seconds <= bound_s:
        return None
    at_least = "≥ " if probed.lower_bound or probed.scale_n < n else "≈ "
    return StageBreak(probed.stage, "time", f"{at_least}{fmt.seconds(probed.seconds)} at "
                      f"{fmt.conversations(probed.scale_n)} "
                      f"({probed.how}) > {bound_text}", PROJECTED)


def verdict(pa: ProfileAnalysis, n: int, profile=None, probed: ProbedStageTime | None = None) -> Verdict:
    """Which stage of `pa` breaks first at n conversations, on what, with the evidence (module docstring).
    probed: the stage time `kura-perf kura-probe` gave at n, which outranks the fits for that stage."""
    backend = pa.backend
    profile = profile if profile is not None else _shipped_profile(pa.profile)
    bound_s, bound_text = time_bound_s(profile.stage_timeout_s if profile else None)
    machine = hardware_tier(n)
    machine_mib = tier_mib(machine.ram_gb)
    api = api_waiting(pa, n, profile) if profile is not None else None
    first, unsupported, later_stops = None, [], []
    walls, peaks = {}, {}
    for stage in _stages(pa):
        fit = pa.fits.get(stage)
        stop = measured_stop(pa, stage, n)
        if stop is not None:
            if first is None:
                first = StageBreak(stage, "measured stop", describe_stop(stop), MEASURED, int(stop["scale_n"]))
            else:
                later_stops.append(f"{stage} {stop['status']} at {fmt.conversations(stop['scale_n'])}")
            continue
        measured_here = fit is not None and n in set(int(s) for s in fit.measured["scale_n"])
        if not (measured_here or supported(fit)):
            unsupported.append(f"{stage} (has {_scales_of(fit)})")
            continue
        wall, peak = fit.wall_at(n), fit.peak_at(n)
        if probed is not None and probed.stage == stage and probed.seconds > (wall.value or 0.0):
            at = "" if probed.scale_n == n else f" at {fmt.conversations(probed.scale_n)}"
            wall = Estimate(probed.seconds, PROJECTED, method=f"kura-perf kura-probe's steps{at}"
                            + (" (a lower bound)" if probed.lower_bound or probed.scale_n < n else ""))
        walls[stage], peaks[stage] = wall, peak
        if first is not None:
            continue
        if probed is not None and probed.stage == stage and (hit := _probed_break(probed, n, bound_s, bound_text)):
            first = hit
            continue
        api_s, calls, binds = (api or {}).get(stage, (0.0, 0, ""))
        if peak.value is not None and peak.value > machine_mib:
            first = StageBreak(stage, "memory", f"peak {fmt.megabytes(peak.value)} > the proposal's "
                               f"{machine.ram_gb} GB machine for {fmt.conversations(n)}", peak.basis)
        elif api_s > bound_s:
            first = StageBreak(stage, "API calls", f"{calls:,} calls need {fmt.seconds(api_s)} of waiting "
                               f"({binds} binds) > {bound_text}", PROJECTED)
        elif wall.value is not None and wall.value > bound_s:
            first = StageBreak(stage, "time", f"{fmt.seconds(wall.value)}{_by(wall)} > {bound_text}", wall.basis)
    breaking_fit = pa.fits.get(first.stage) if first else None
    if first is None and walls:
        slowest = max(walls, key=lambda s: walls[s].value or 0.0)
        breaking_fit, evidence_stage = pa.fits[slowest], slowest
    else:
        evidence_stage = first.stage if first else None
    evidence = _evidence(breaking_fit, evidence_stage) if evidence_stage else Cell(fmt.MISSING, UNKNOWN)
    if others := _superlinear_cpu_elsewhere(pa, walls, evidence_stage):
        evidence = Cell(f"{evidence.text}; also super-linear CPU: {others}", evidence.kind)
    return Verdict(pa.profile, backend, n, first, unsupported, later_stops, _time_cell(walls, bound_s, bound_text, unsupported),
                   _memory_cell(peaks, unsupported), _api_cell(api, profile), evidence, meta_calls_cell(pa, n))


def _time_cell(walls: dict, bound_s: float, bound_text: str, unsupported: list[str]) -> Cell:
    if not walls:
        return Cell(NOT_ENOUGH if unsupported else fmt.MISSING, UNKNOWN)
    stage = max(walls, key=lambda s: walls[s].value or 0.0)
    wall = walls[stage]
    over = "over" if (wall.value or 0.0) > bound_s else "within"
    return Cell(f"slowest {stage} {fmt.seconds(wall.value)}{_by(wall)}, {over} {bound_text}", wall.basis)


def _by(wall) -> str:
    """' by CPU tail n^1.49 (1K→10K)' when a tail, not the global fit, gave the time (report/fits.py)."""
    return f" by {wall.method}" if wall.method else ""


def _memory_cell(peaks: dict, unsupported: list[str]) -> Cell:
    if not peaks or unsupported:
        return Cell(f"{NOT_ENOUGH}: {', '.join(unsupported)}" if unsupported else fmt.MISSING, UNKNOWN)
    stage = max(peaks, key=lambda s: peaks[s].value or 0.0)
    peak = peaks[stage]
    over = [f"{t.ram_gb} GB" for t in HARDWARE_TIERS if peak.value > tier_mib(t.ram_gb)]
    fits = [f"{t.ram_gb} GB" for t in HARDWARE_TIERS if peak.value <= tier_mib(t.ram_gb)]
    verdicts = ([f"over {', '.join(over)}"] if over else []) + ([f"fits {', '.join(fits)}"] if fits else [])
    return Cell(f"{fmt.megabytes(peak.value)} ({stage}): {'; '.join(verdicts)}", peak.basis)


def _api_cell(api: dict | None, profile) -> Cell:
    if profile is None:
        return Cell("profile not shipped: its limits are unknown", UNKNOWN)
    if not api:
        return Cell("no API calls")
    calls = sum(c for _, c, _ in api.values())
    stage = max(api, key=lambda s: api[s][0])
    seconds, _, binds = api[stage]
    return Cell(f"{calls:,} calls; longest wait {stage} {fmt.seconds(seconds)} ({binds} binds)", PROJECTED)


# -- the proposal's tiers: the largest scale that fits ---------------------------------------------

def _measured_peak(pa: ProfileAnalysis, n: int) -> float | None:
    values = [fit.peak_at(n).value for fit in pa.fits.values() if fit.peak_at(n).basis == MEASURED]
    return max(values) if values else None


def crossing(pa: ProfileAnalysis, limit_mib: float, start_n: int) -> int | None:
    """The largest n >= start_n whose fitted pipeline peak (the largest stage's peak_model) stays within
    limit_mib, by bisection on log n; None beyond PROJECTION_CEILING_N."""
    def peak(n: float) -> float:
        return max(fit.peak_model(n) or 0.0 for fit in pa.fits.values())

    if peak(PROJECTION_CEILING_N) <= limit_mib:
        return None
    if peak(start_n) > limit_mib:
        return start_n
    lo, hi = math.log(start_n), math.log(PROJECTION_CEILING_N)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if peak(math.exp(mid)) <= limit_mib else (lo, mid)
    return int(math.exp(lo))


def _two_figures(n: int) -> str:
    """A projected scale to two significant figures: 163,412 -> '160K' (a fit's crossing is no finer)."""
    rounded = int(float(f"{n:.2g}"))
    return fmt.conversations(rounded)


def tier_answer(pa: ProfileAnalysis, ram_gb: int) -> Cell:
    """The largest scale that fits a machine of ram_gb, measured, then projected from the fits."""
    limit = tier_mib(ram_gb)
    scales = pa.scales
    if not scales:
        return Cell(f"{NOT_ENOUGH} (none)", UNKNOWN)
    fitting = None
    for n in scales:
        peak = _measured_peak(pa, n)
        if peak is None or peak > limit:
            if fitting is None:
                return Cell(f"none measured: {fmt.conversations(n)} peaks at {fmt.megabytes(peak)}", "bad")
            return Cell(f"up to {fmt.conversations(fitting)} measured ({fmt.conversations(n)} peaks at "
                        f"{fmt.megabytes(peak)})")
        fitting = n
    text = f"up to {fmt.conversations(fitting)} measured"
    stops = pa.records[pa.records["status"].isin(STOPPED) & (pa.records["scale_n"] > fitting)]
    memory_stops = [int(r["scale_n"]) for r in stops.to_dict("records") if stop_resource(r) != "time"
                    and r.get("status") != "interrupted"]  # a time limit or a Ctrl-C says nothing of memory
    cap = min(memory_stops) if memory_stops else None
    lacking = [f"{s} (has {_scales_of(f)})" for s, f in pa.fits.items() if not supported(f)]
    if lacking:
        return Cell(f"{text}; beyond: {NOT_ENOUGH} (needs ≥{MIN_FIT_SCALES}: {', '.join(lacking)})", MEASURED)
    n_star = crossing(pa, limit, fitting)
    if cap is not None and (n_star is None or n_star >= cap):
        return Cell(f"{text}; below {fmt.conversations(cap)} (a stage stopped there, measured)", MEASURED)
    if n_star is None:
        return Cell(f"{text}; beyond {fmt.conversations(PROJECTION_CEILING_N)} by the fits", PROJECTED)
    if n_star <= fitting:
        return Cell(f"{text}; the fits cross {ram_gb} GB there already", MEASURED)
    return Cell(f"{text}; ≈ {_two_figures(n_star)} projected", PROJECTED)


# -- the tables ------------------------------------------------------------------------------------

def _profiles(analysis: Analysis, profiles: list[str] | None) -> list[ProfileAnalysis]:
    return [analysis.profiles[p] for p in (profiles or list(analysis.profiles)) if p in analysis.profiles]


def breaking_table(analysis: Analysis, profiles: list[str] | None = None, scales=BREAK_SCALES,
                   probed: dict[tuple[str, int], ProbedStageTime] | None = None) -> Table:
    """probed: (profile, n) -> a stage's time measured step by step there (ProbedStageTime)."""
    table = Table(["Backend (profile)", "Conversations", "Breaks first (stage: resource: why)", "Time",
                   "Peak memory vs 4 / 16 / 64 GB", "API waiting (predict's model)", "Evidence",
                   "Meta-cluster naming calls"],
                  caption=f"A stage breaks on: a measured stop (a record that did not finish at that scale or below); "
                          f"memory (peak over the proposal's computational requirements for the scale); API calls (predict's "
                          f"waiting over the time bound); time (work time over the bound). Time bound = the "
                          f"profile's stage_timeout_s, at most {fmt.seconds(PRACTICAL_BOUND_S)}. Figures beyond the "
                          f"measured scales come from fits over ≥{MIN_FIT_SCALES} measured scales only.")
    for pa in _profiles(analysis, profiles):
        for n in scales:
            v = verdict(pa, n, probed=_probed_at(probed or {}, pa.profile, n))
            table.add(Cell(f"{v.backend} ({v.profile})", "head"), fmt.conversations(n), v.first_cell(), v.time,
                      v.memory, v.api, v.evidence, v.meta_calls)
    return table


def _probed_at(probed: dict[tuple[str, int], ProbedStageTime], profile: str, n: int) -> ProbedStageTime | None:
    """The probe at the largest scale <= n: a stage over its bound at 100K is over it at 1M too (its work
    only grows with n), the way a measured stop is carried to larger scales."""
    scales = [m for (name, m) in probed if name == profile and m <= n]
    return probed[(profile, max(scales))] if scales else None


def tiers_table(analysis: Analysis, profiles: list[str] | None = None) -> Table:
    table = Table(["Backend (profile)"] + [f"Largest scale in {t.ram_gb} GB" for t in HARDWARE_TIERS],
                  caption="The proposal's machines (its computational requirements: 4, 16, 64 GB): the largest measured scale whose peak RSS (largest stage) "
                          "fits the RAM, then where the peak fitted over the measured scales crosses it (projected). "
                          "No headroom is added (the hardware table adds it when it sizes a machine).")
    for pa in _profiles(analysis, profiles):
        backend = pa.backend
        table.add(Cell(f"{backend} ({pa.profile})", "head"), *[tier_answer(pa, t.ram_gb) for t in HARDWARE_TIERS])
    return table
