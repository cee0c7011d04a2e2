"""Scaling guidance written from the figures: which stage dominates where, and when a bigger machine
stops being enough. Every sentence comes from a measured or fitted number, and says which."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from kura_perf.report import fmt
from kura_perf.report.analysis import PROJECTION_SCALES, ProfileAnalysis
from kura_perf.report.fits import MEASURED
from kura_perf.report.hardware import SINGLE_MACHINE_CORES, SINGLE_MACHINE_RAM_GB, TARGET_HOURS, HardwareRow
from kura_perf.report.quality_trend import Collapse

SUPERLINEAR = 1.15
DAY_S = 86_400


def _dominant(pa: ProfileAnalysis, n: int, what: str) -> tuple[str, float, str] | None:
    """(stage, share of the total or the peak itself, basis) at n conversations."""
    estimates = {s: (f.wall_at(n) if what == "wall" else f.peak_at(n)) for s, f in pa.fits.items()}
    if not estimates or any(e.value is None for e in estimates.values()):
        return None
    stage = max(estimates, key=lambda s: estimates[s].value)
    basis = "measured" if all(e.basis == MEASURED for e in estimates.values()) else "extrapolated"
    if what == "wall":
        total = sum(e.value for e in estimates.values())
        return stage, estimates[stage].value / total if total else 0.0, basis
    return stage, estimates[stage].value, basis


def one_time_costs(pa: ProfileAnalysis) -> str | None:
    """numba's compile, the first import of numba/umap-learn and the backends' set-up, each on a line of
    its own: they are not in the shares, fits or projections above (those use the stages' work time),
    because none of them grows with the data."""
    kinds = (("jit_compile_s", "JIT compile", "one-time per machine: numba's cache serves later processes"),
             ("startup_s", "library start-up", "importing numba and UMAP; per process"),
             ("setup_s", "set-up", "model loading; per process"))
    lines = []
    for stage, fit in pa.fits.items():
        m = fit.measured
        bits = []
        for column, name, why in kinds:
            seconds = m[column].max(skipna=True)
            if not fmt.is_missing(seconds) and seconds > 0:
                bits.append(f"{name} up to {fmt.seconds(seconds)} ({why})")
        if bits:
            lines.append(f"<b>{stage}</b>: " + ", ".join(bits))
    if not lines:
        return None
    return "Not counted in the stages' time above (none grows with the data): " + "; ".join(lines) + "."


def guidance(pa: ProfileAnalysis, hardware: list[HardwareRow], breaking: pd.DataFrame,
             host_cores: int | None = None, collapses: Sequence[Collapse] = ()) -> list[str]:
    """Paragraphs (plain text, may contain <b>) for the scaling-guidance section. A measured quality
    collapse (of any profile) comes first: scaling up a pipeline whose clusters stop meaning anything
    is the first thing a reader must know, before which stage dominates the time."""
    if not pa.fits:
        return ["No successful stage runs yet for this profile: nothing to base guidance on."]
    out: list[str] = [f"<b>{html.escape(c.sentence())}</b>" for c in collapses]
    scales = pa.scales
    if not pa.can_fit:
        out.append(f"Only one scale ({fmt.conversations(scales[0])}) has been measured, so no scaling exponent "
                   f"can be fitted and nothing is extrapolated. Run a second scale (e.g. "
                   f"<code>kura-perf run --scale {'1k' if scales[0] != 1000 else '100'}</code>) to get curves.")

    points = sorted(set(scales) | ({*PROJECTION_SCALES} if pa.can_fit else set()))
    parts = []
    for n in points:
        dom = _dominant(pa, n, "wall")
        if dom:
            parts.append(f"{fmt.conversations(n)}: <b>{dom[0]}</b> ({dom[1]:.0%} of the time, {dom[2]})")
    if parts:
        out.append("Which stage dominates processing time — " + "; ".join(parts) + ".")
    if overhead := one_time_costs(pa):
        out.append(overhead)

    if pa.can_fit:
        steep = [(s, f.wall.exponent) for s, f in pa.fits.items() if f.wall and f.wall.exponent > SUPERLINEAR]
        if steep:
            items = ", ".join(f"<b>{s}</b> ({fmt.exponent(b)}: 10× the data costs {10 ** b:.0f}× the time)"
                              for s, b in sorted(steep, key=lambda x: -x[1]))
            out.append(f"Super-linear stages: {items}. These set the limit at large scale; their share keeps "
                       "growing, so optimise or shard them first.")
        else:
            out.append("No stage grows faster than about linearly (all time exponents ≤ "
                       f"{SUPERLINEAR}): a bigger machine or more time scales the pipeline proportionally.")
        fitted_from = f"{fmt.conversations(min(scales))}–{fmt.conversations(max(scales))}"
        if max(scales) < 10_000:
            out.append(f"Caution: the fits come from {fitted_from} only. At small scales fixed costs (model "
                       "loading, interpreter start) flatten the curves, so exponents tend to be underestimated and "
                       "the 100K/1M projections are lower bounds. Measure 10k (and 50k) to firm them up.")

    mem = _dominant(pa, 1_000_000, "peak") if pa.can_fit else None
    if mem:
        out.append(f"Memory: at 1M conversations <b>{mem[0]}</b> would peak at about {fmt.megabytes(mem[1])} "
                   f"({mem[2]}).")

    timed = [r for r in hardware if r.wall_s_here is not None]
    if timed:
        out.append("Stages' wall summed on this host (gaps between stages and start-up before the first stage "
                   "not included): " + "; ".join(
                       f"{fmt.conversations(r.n)} {fmt.seconds(r.wall_s_here)} ({r.basis})" for r in timed) + ".")
        spans = [r for r in hardware if r.run_span_s is not None]
        if spans:
            out.append("Run wall, first stage start → last stage end (start-up before the first stage not "
                       "recorded): " + "; ".join(f"{fmt.conversations(r.n)} {fmt.seconds(r.run_span_s)}"
                                                  for r in spans) + ".")
    for row in hardware:
        if row.ram_gb is None or row.wall_s_here is None:
            continue
        if row.distributed:
            reasons = []
            if row.ram_gb > SINGLE_MACHINE_RAM_GB:
                reasons.append(f"it needs ~{fmt.gigabytes(row.ram_gb)} RAM (more than a {SINGLE_MACHINE_RAM_GB} GB "
                               "machine)")
            if row.cores > SINGLE_MACHINE_CORES:
                reasons.append(f"finishing within {TARGET_HOURS:g} h needs ~{row.cores} cores")
            out.append(f"<b>Go distributed at {fmt.conversations(row.n)}</b> ({row.basis}): "
                       + " and ".join(reasons) + ". Shard the per-conversation stages (summaries, embeddings) "
                       f"across workers and keep the memory-bound stage ({row.dominant_memory_stage}) on one large "
                       "node, or replace it with a mini-batch/approximate method.")
            break
        if row.wall_s_here <= TARGET_HOURS * 3600:
            continue
        if host_cores is None or row.cores > host_cores:
            out.append(f"<b>Bigger machine at {fmt.conversations(row.n)}</b> ({row.basis}): its stages take "
                       f"{fmt.seconds(row.wall_s_here)} here (summed); {row.cores} cores and {fmt.gigabytes(row.ram_gb)} RAM "
                       f"bring it to about {TARGET_HOURS:g} h if the CPU-bound stages parallelise.")
        else:
            out.append(f"At {fmt.conversations(row.n)} the stages take {fmt.seconds(row.wall_s_here)} here (summed; "
                       f"{row.basis}) "
                       f"although its CPU work would fit in {TARGET_HOURS:g} h on {row.cores} cores: the stages spend "
                       "their time waiting (model loading, I/O, an API, or a busy machine), so more cores alone "
                       "will not shorten it — check the CPU/wall ratio per stage before buying hardware.")
    single = [r for r in hardware if r.ram_gb is not None and not r.distributed]
    if single:
        last = single[-1]
        out.append(f"A single machine suffices up to {fmt.conversations(last.n)} conversations "
                   f"({fmt.gigabytes(last.ram_gb)} RAM, {last.cores} cores; {last.basis}).")

    if pa.api_bound():
        out.append("This profile calls an API: its time is dominated by request latency and rate limits, which "
                   "more cores do not shorten. Raise concurrency up to the point where 429s start (see the API "
                   "section), or ask for higher rate limits.")

    if len(breaking):
        first = breaking.sort_values("scale_n").drop_duplicates(["profile", "stage"]).head(3)
        items = "; ".join(
            f"<b>{html.escape(str(r['stage']))}</b> at {fmt.conversations(r['scale_n'])} with profile "
            f"{html.escape(str(r['profile']))} ({r['status']}: "
            f"{html.escape(str(r['error_message'] or r['error_type'])[:140])})" for _, r in first.iterrows())
        out.append(f"Breaking points recorded on this host: {items}. See the breaking-points section.")
    return out
