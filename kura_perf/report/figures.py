"""The report's PNG figures (matplotlib, Agg: no display needed). Each function writes one file and
returns its path, or None when there is nothing to draw. Projected parts are drawn dashed on a grey
background labelled "extrapolated", so no one mistakes them for measurements. Memory axes are in decimal
MB/GB like the tables (fmt's one convention): the meter's MiB are converted before they are plotted."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from kura_perf.proposal import STORAGE_KB_PER_CONVERSATION
from kura_perf.report import fmt
from kura_perf.report.analysis import FIT_TARGETS, PROJECTION_SCALES, ProfileAnalysis, expected_embedding_kb, kb_range
from kura_perf.stages.base import STAGES

DPI = 110
EXTRAPOLATION_LIMIT = 1_000_000
_PALETTE = plt.get_cmap("tab10").colors


def stage_color(stage: str):
    index = STAGES.index(stage) if stage in STAGES else len(STAGES) + abs(hash(stage)) % 4
    return _PALETTE[index % len(_PALETTE)]


def _style(ax) -> None:
    ax.minorticks_off()  # minor log ticks cost more layout time than they add
    ax.grid(True, which="major", alpha=0.35)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")  # layout done by tight_layout: one draw, not two
    plt.close(fig)
    return path


_conv_formatter = FuncFormatter(lambda x, _: fmt.conversations(x) if x >= 1 else "")


def _tick_seconds(v: float) -> str:
    """Compact labels for round tick values: 0.1 s, 10 s, 1 min, 10 min, 1 h, 1 d."""
    for div, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
        if v >= div:
            return f"{v / div:g} {unit}"
    return f"{v:g} s"


def _tick_memory(v: float, gb: bool) -> str:
    """v in decimal MB."""
    return f"{v / 1000:g} GB" if gb else f"{v:g} MB"


# Round values people read at a glance, for log axes: 1 s, 1 min, 1 h ...; 100 MB, 1 GB ...
_SECOND_TICKS = [0.001, 0.01, 0.1, 1, 10, 60, 600, 3600, 86_400, 864_000, 8_640_000]
_SECOND_FINE_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300,
                      600, 1200, 1800, 3600, 7200, 18_000, 43_200, 86_400, 172_800, 432_000, 864_000]
_MB_TICKS = [1, 10, 100, 1000]
_MB_FINE_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 700, 1000, 1500, 2000]
_GB_TICKS = [1000 * g for g in (0.1, 1, 10, 100, 1000, 10_000)]
_GB_FINE_TICKS = [1000 * g for g in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                     10_000, 20_000)]


def _human_log_ticks(ax, unit: str) -> None:
    """Put y ticks on round human values within the drawn range (coarse steps, finer if too few)."""
    low, high = ax.get_ylim()
    gb = unit != "s" and high >= 2000
    if unit == "s":
        coarse, fine = _SECOND_TICKS, _SECOND_FINE_TICKS
        label = _tick_seconds
    else:
        coarse, fine = (_GB_TICKS, _GB_FINE_TICKS) if gb else (_MB_TICKS, _MB_FINE_TICKS)
        label = functools.partial(_tick_memory, gb=gb)
    ticks = [v for v in coarse if low <= v <= high]
    if len(ticks) < 3:
        ticks = [v for v in fine if low <= v <= high]
        while len(ticks) > 7:
            ticks = ticks[::2]
    if len(ticks) >= 2:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: label(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _memory_unit(max_mb: float) -> tuple[float, str]:
    """(divisor, unit) for values in decimal MB, so one linear axis shows one unit: GB from 2 GB up, else MB."""
    return (1000.0, "GB") if max_mb >= 2000 else (1.0, "MB")


def _unit_formatter(unit: str) -> FuncFormatter:
    return FuncFormatter(lambda v, _: f"{v:g} {unit}")


def _mark_extrapolated(ax, from_n: float) -> None:
    ax.axvspan(from_n, EXTRAPOLATION_LIMIT * 1.6, color="#eeeeee", zorder=0)
    ax.text(from_n * 1.15, 0.97, "extrapolated", transform=ax.get_xaxis_transform(), va="top", ha="left",
            fontsize=9, color="#666666", style="italic")
    for n in FIT_TARGETS:
        ax.axvline(n, color="#999999", lw=0.8, ls=":", zorder=1)


def peak_fit_series(fit, grid) -> list[float]:
    """The dashed peak-RSS line of one stage over `grid`, in decimal MB: the fitted model alone (start RSS +
    fitted growth), so it is as monotone as the power law. Measured medians are the solid line; mixing them
    in here (fit.peak_at) made the dashed line jump at a measured scale and dip just beside it."""
    return [fmt.mib_to_mb(fit.peak_model(float(n))) for n in grid]


def scaling_figure(pa: ProfileAnalysis, path: Path) -> Path | None:
    """Wall time and peak RSS against conversations, log–log, per stage, with fits projected to 1M."""
    if not pa.fits:
        return None
    fig, (ax_wall, ax_peak) = plt.subplots(1, 2, figsize=(11, 5.6))
    largest = max(fit.largest_n for fit in pa.fits.values())
    grid = np.logspace(np.log10(min(pa.scales)), np.log10(EXTRAPOLATION_LIMIT), 60)
    for stage, fit in pa.fits.items():
        color = stage_color(stage)
        m = fit.measured
        wall_label = f"{stage} ({fmt.exponent(fit.wall.exponent)})" if fit.wall else f"{stage} (no fit)"
        ax_wall.plot(m["scale_n"], m["work_s"], "o-", color=color, label=wall_label, lw=1.8, ms=5, zorder=3)
        if fit.wall:
            ax_wall.plot(grid, [fit.wall.predict(n) for n in grid], "--", color=color, lw=1.1, alpha=0.8, zorder=2)
        growth = fit.growth or fit.peak
        peak_label = f"{stage} (growth {fmt.exponent(growth.exponent)})" if growth else f"{stage} (no fit)"
        ax_peak.plot(m["scale_n"], m["peak_rss_mb"].map(fmt.mib_to_mb), "o-", color=color, label=peak_label, lw=1.8, ms=5, zorder=3)
        if growth:
            ax_peak.plot(grid, peak_fit_series(fit, grid), "--", color=color, lw=1.1, alpha=0.8,
                         zorder=2)
    for ax, title, unit in ((ax_wall, "Wall time per stage", "s"), (ax_peak, "Peak RSS per stage", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(min(pa.scales) / 1.5, EXTRAPOLATION_LIMIT * 1.6)
        _mark_extrapolated(ax, largest)
        ax.xaxis.set_major_formatter(_conv_formatter)
        ax.xaxis.set_minor_formatter(NullFormatter())
        _human_log_ticks(ax, unit)
        ax.set_xlabel("conversations")
        ax.set_title(title, fontsize=11, loc="left")
        _style(ax)
        ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.suptitle(f"Scaling, profile '{pa.profile}': solid = measured medians, dashed = fitted power law",
                 fontsize=11, x=0.01, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def time_share_figure(pa: ProfileAnalysis, path: Path) -> Path | None:
    """Each stage's share of one run's time, per scale, measured then projected: which stage dominates."""
    if not pa.fits:
        return None
    scales = list(pa.scales) + ([n for n in PROJECTION_SCALES if n > max(pa.scales)] if pa.can_fit else [])
    shares, projected = [], []
    for n in scales:
        walls = {s: fit.wall_at(n) for s, fit in pa.fits.items()}
        if any(e.value is None for e in walls.values()):
            continue
        total = sum(e.value for e in walls.values())
        shares.append((n, {s: e.value / total for s, e in walls.items()}, total))
        projected.append(any(e.projected for e in walls.values()))
    if not shares:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.6))
    x = np.arange(len(shares))
    bottom = np.zeros(len(shares))
    for stage in pa.fits:
        values = np.array([s[1][stage] for s in shares])
        bars = ax.bar(x, values, bottom=bottom, color=stage_color(stage), label=stage, width=0.65,
                      edgecolor="white")
        for bar, is_projected in zip(bars, projected):
            if is_projected:
                bar.set_hatch("//")
                bar.set_alpha(0.75)
        bottom += values
    labels = [f"{fmt.conversations(n)}\n{fmt.seconds(total)}" + ("\n(extrapolated)" if p else "")
              for (n, _, total), p in zip(shares, projected)]
    ax.set_xticks(x, labels, fontsize=9)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of processing time")
    ax.set_title("Where the time goes (total time under each bar; hatched = projected by the fits)", fontsize=11,
                 loc="left")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    _style(ax)
    fig.tight_layout()
    return _save(fig, path)


def storage_figure(pa: ProfileAnalysis, path: Path) -> Path | None:
    """kB per conversation per stage, measured (coloured), beside the proposal's §1.3 estimate (grey)."""
    storage = pa.storage_kb_per_conversation()
    stages = [s for s in pa.fits if s in storage]
    if not stages:
        return None
    dim = pa.embedding_dimension()
    fig, ax = plt.subplots(figsize=(11, 0.62 * len(stages) + 1.3))
    y = np.arange(len(stages))
    measured = [storage[s][0] for s in stages]
    ax.barh(y - 0.18, measured, color=[stage_color(s) for s in stages], height=0.34, label="measured", zorder=3)
    for i, stage in enumerate(stages):
        ax.text(measured[i], i - 0.18, f" {fmt.kilobytes(measured[i])}", va="center", fontsize=8.5, zorder=5)
        expected = STORAGE_KB_PER_CONVERSATION.get(stage)
        if not expected:
            ax.text(0, i + 0.18, " no proposal estimate", va="center", fontsize=8, color="#888888")
            continue
        low, high = expected_embedding_kb(dim) if stage == "embeddings" else expected
        ax.barh(i + 0.18, low, height=0.34, color="#9aa3ae", zorder=3,
                label="proposal's estimate" if i == 0 or "proposal's estimate" not in ax.get_legend_handles_labels()[1] else None)
        if high > low:
            ax.barh(i + 0.18, high - low, left=low, height=0.34, color="#d5dae0", zorder=3, hatch="///",
                    edgecolor="#9aa3ae", linewidth=0)
        text = kb_range(low, high)
        ax.text(high, i + 0.18, f" proposal: {text}", va="center", fontsize=8, color="#555555", zorder=5)
    ax.set_yticks(y, stages)
    ax.invert_yaxis()
    ax.set_xlabel("kB per conversation (1 kB = 1,000 bytes)")
    ax.set_title("Storage per conversation: measured (colour) vs the proposal's estimate (grey; hatched = range)",
                 fontsize=11, loc="left")
    ax.set_xlim(0, max(max(measured), 5.0) * 1.18)
    ax.legend(fontsize=8, loc="lower right")
    _style(ax)
    fig.tight_layout()
    return _save(fig, path)


def _samples(value) -> np.ndarray:
    """A recorded list column as floats; empty when the record has none (NULL comes back as NA or None)."""
    if value is None or (np.ndim(value) == 0 and fmt.is_missing(value)):
        return np.asarray([], dtype=float)
    return np.asarray(value, dtype=float)


def timeline_figure(pa: ProfileAnalysis, n: int, path: Path) -> Path | None:
    """RSS over each stage's run at n conversations (latest run): where memory grows and how."""
    latest = pa.latest_at(n)
    if latest.empty:
        return None
    order = [s for s in pa.fits if s in set(latest["stage"])]
    cols = 3
    rows = int(np.ceil(len(order) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.7 * rows), squeeze=False)
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    for ax, stage in zip(axes.flat, order):
        r = latest[latest["stage"] == stage].iloc[-1]
        t, mb = _samples(r["mem_timeline_s"]), _samples(r["mem_timeline_mb"]) * fmt.MIB / 10**6  # MiB -> MB
        color = stage_color(stage)
        candidates = [float(np.nanmax(mb))] if len(mb) else []
        if not fmt.is_missing(r["peak_rss_mb"]):
            candidates.append(fmt.mib_to_mb(r["peak_rss_mb"]))
        top = max(candidates, default=0.0)
        div, unit = _memory_unit(top)
        mb = mb / div
        if len(t) and len(t) == len(mb):
            ax.plot(t, mb, color=color, lw=1.5)
            ax.fill_between(t, mb, mb.min() * 0.98, color=color, alpha=0.15)
        else:
            ax.text(0.5, 0.5, "no timeline recorded", ha="center", va="center", transform=ax.transAxes,
                    color="#888888")
        if not fmt.is_missing(r["peak_rss_mb"]):
            ax.axhline(fmt.mib_to_mb(r["peak_rss_mb"]) / div, color="#b00020", lw=0.9, ls="--")
        if not fmt.is_missing(r["rss_start_mb"]):
            ax.axhline(fmt.mib_to_mb(r["rss_start_mb"]) / div, color="#555555", lw=0.8, ls=":")
        ax.set_title(f"{stage} · {fmt.seconds(r['wall_s'])} · peak {fmt.megabytes(r['peak_rss_mb'])}",
                     fontsize=9.5, loc="left")
        ax.yaxis.set_major_formatter(_unit_formatter(unit))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("seconds into stage", fontsize=8)
        _style(ax)
    fig.suptitle(f"RSS during each stage at {fmt.conversations(n)} conversations (profile '{pa.profile}'; "
                 "red dashed = peak, grey dotted = RSS at stage start)", fontsize=10.5, x=0.01, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def sweep_figure(sweeps: pd.DataFrame, path: Path) -> Path | None:
    """API throughput and the share of requests answered 429, against concurrency."""
    ok = sweeps.dropna(subset=["concurrency"])
    if ok.empty:
        return None
    fig, (ax_rate, ax_429) = plt.subplots(1, 2, figsize=(11, 4))
    latest = ok.sort_values("recorded_at").groupby(["profile", "stage", "concurrency"]).tail(1)
    for (profile, stage), rows in latest.groupby(["profile", "stage"]):
        rows = rows.sort_values("concurrency")
        label = f"{profile} / {stage}"
        ax_rate.plot(rows["concurrency"], rows["items_per_min"], "o-", label=label, color=stage_color(stage))
        ax_429.plot(rows["concurrency"], rows["share_429"].fillna(0) * 100, "o-", label=label,
                    color=stage_color(stage))
    ax_rate.set_ylabel("items per minute")
    ax_rate.set_title("Throughput vs concurrency", fontsize=11, loc="left")
    ax_429.set_ylabel("% of requests answered 429")
    ax_429.set_title("Rate limiting vs concurrency", fontsize=11, loc="left")
    levels = sorted(int(c) for c in latest["concurrency"].unique())
    for ax in (ax_rate, ax_429):
        ax.set_xscale("log")
        ax.set_xlabel("concurrent requests")
        ax.xaxis.set_major_locator(FixedLocator(levels))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.legend(fontsize=8)
        _style(ax)
    fig.tight_layout()
    return _save(fig, path)


def history_figure(history: pd.DataFrame, stages: list[str], title: str, path: Path) -> Path | None:
    """Each stage's wall time and peak RSS over the runs of one partition, oldest first."""
    ok = history[history["status"] == "success"]
    if ok.empty:
        return None
    run_order = list(dict.fromkeys(history.sort_values("started_at")["run_id"]))
    starts = history.groupby("run_id")["started_at"].min()
    fig, (ax_wall, ax_peak) = plt.subplots(1, 2, figsize=(11, 3.9))
    top = fmt.mib_to_mb(ok["peak_rss_mb"].max()) if ok["peak_rss_mb"].notna().any() else 1.0
    div, unit = _memory_unit(top)
    for stage in stages:
        rows = ok[ok["stage"] == stage]
        if rows.empty:
            continue
        x = [run_order.index(r) for r in rows["run_id"]]
        ax_wall.plot(x, rows["wall_s"], "o-", color=stage_color(stage), label=stage, ms=4)
        ax_peak.plot(x, rows["peak_rss_mb"].map(fmt.mib_to_mb) / div, "o-", color=stage_color(stage), label=stage, ms=4)
    step = max(1, len(run_order) // 8)
    ticks = list(range(0, len(run_order), step))
    labels = [pd.Timestamp(starts[run_order[i]]).strftime("%m-%d\n%H:%M") for i in ticks]
    ax_wall.set_yscale("log")
    _human_log_ticks(ax_wall, "s")
    ax_peak.set_ylim(0, top / div * 1.12)
    ax_peak.yaxis.set_major_formatter(_unit_formatter(unit))
    for ax, name in ((ax_wall, "Wall time"), (ax_peak, "Peak RSS")):
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_xlabel("run (start time, UTC)")
        ax.set_title(f"{name}, {title}", fontsize=10.5, loc="left")
        _style(ax)
    ax_peak.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)
