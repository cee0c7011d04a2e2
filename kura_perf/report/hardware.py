"""The hardware recommendation matrix: RAM, cores and disk per scale, derived from measured figures.

RAM   = the largest stage peak at that scale (measured or projected by the fits) x 1.5 headroom + 1 GB
        for the OS, rounded up to a size machines come in. Sizes are decimal GB (fmt's one convention;
        the meter's MiB converted), so a "16 GB" machine (16 GiB) is never short of the figure.
Cores = enough to finish one full pipeline run within TARGET_HOURS, assuming the CPU-bound work
        spreads over cores: projected CPU-seconds (stage time x cores it kept busy) / target; at
        least 2 and at least what the run used. Time spent waiting on an API does not shrink with cores.
Disk  = the stage outputs (kB per conversation x n) x 2 (atomic writes keep a temp copy; reruns)
        + 5 GB for the environment and model weights.
Beyond one large machine (SINGLE_MACHINE_*), the row says to go distributed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kura_perf.proposal import hardware_tier
from kura_perf.report import fmt
from kura_perf.report.analysis import HARDWARE_SCALES, ProfileAnalysis
from kura_perf.report.fits import MEASURED, UNKNOWN

RAM_HEADROOM = 1.5
OS_RESERVE_GB = 1.0
TARGET_HOURS = 1.0
DISK_FACTOR = 2.0
ENVIRONMENT_GB = 5.0
MIN_CORES = 2
SINGLE_MACHINE_RAM_GB = 512
SINGLE_MACHINE_CORES = 64
RAM_SIZES_GB = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
DISK_SIZES_GB = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def proposal_guess(n: int) -> tuple[str, str, str]:
    """§3.2's machine for n conversations as the proposal writes it (RAM, CPU, storage; "+" on the open-ended
    tier, whose storage also says to consider distributed processing)."""
    tier = hardware_tier(n)
    plus = "+" if tier.open_ended else ""
    storage = f"{tier.storage_gb} GB{plus}" + (" · consider distributed" if tier.distributed else "")
    return f"{tier.ram_gb} GB{plus}", f"{tier.cores}{plus} cores", storage


@dataclass(frozen=True)
class HardwareRow:
    n: int
    ram_gb: float | None
    cores: int | None
    disk_gb: float | None
    peak_mb: float | None  # the process's peak RSS during the stage where it was highest (MiB, as recorded)
    wall_s_here: float | None  # the stages' wall times summed, on the report's host (no gaps, no start-up)
    basis: str  # measured | interpolated | extrapolated | unknown
    distributed: bool
    dominant_memory_stage: str | None
    note: str = ""
    # A run's wall from its first stage's start to its last stage's end (median of the complete runs at n);
    # None where no complete run was recorded. Process start-up before the first stage is in no record.
    run_span_s: float | None = None
    # The largest memory growth of one stage itself (peak − RSS at the stage's start, MiB): most of a
    # process peak can be what was resident before the stage began (interpreter, libraries, models).
    growth_mb: float | None = None
    growth_stage: str | None = None
    growth_basis: str = UNKNOWN


def round_up(value: float, sizes: tuple[int, ...]) -> float:
    for size in sizes:
        if value <= size:
            return float(size)
    return float(math.ceil(value / sizes[-1]) * sizes[-1])


def _power_of_two_at_least(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1.0))))


def recommend_row(analysis: ProfileAnalysis, n: int) -> HardwareRow:
    peaks = {stage: fit.peak_at(n) for stage, fit in analysis.fits.items()}
    walls = {stage: fit.wall_at(n) for stage, fit in analysis.fits.items()}
    peak = analysis.pipeline_peak_at(n)
    wall = analysis.pipeline_wall_at(n)
    if peak.value is None or wall.value is None:
        return HardwareRow(n, None, None, None, None, None, UNKNOWN, False, None,
                           "needs ≥ 2 measured scales to project" if not analysis.can_fit else peak.note)
    dominant = max(peaks, key=lambda s: peaks[s].value or 0.0)
    growths = {stage: fit.growth_at(n) for stage, fit in analysis.fits.items()}
    growth_stage = max(growths, key=lambda s: growths[s].value or 0.0)
    growth = growths[growth_stage]
    ram = round_up(fmt.mib_to_gb(peak.value) * RAM_HEADROOM + OS_RESERVE_GB, RAM_SIZES_GB)

    utilisation = analysis.cpu_utilisation()
    cpu_s = sum((walls[s].value or 0.0) * max(utilisation.get(s, 1.0), 0.05) for s in walls)
    busiest = max(utilisation.values(), default=1.0)
    cores = max(MIN_CORES, _power_of_two_at_least(busiest), _power_of_two_at_least(cpu_s / (TARGET_HOURS * 3600)))

    storage = analysis.storage_kb_per_conversation()
    output_gb = sum(kb for kb, _ in storage.values()) * n / 10**6  # decimal kB -> GB
    disk = round_up(output_gb * DISK_FACTOR + ENVIRONMENT_GB, DISK_SIZES_GB)

    distributed = ram > SINGLE_MACHINE_RAM_GB or cores > SINGLE_MACHINE_CORES
    basis = peak.basis if peak.basis != MEASURED else wall.basis
    return HardwareRow(n, ram, cores, disk, peak.value, wall.value, basis, distributed, dominant,
                       run_span_s=analysis.run_span_at(n), growth_mb=growth.value,
                       growth_stage=growth_stage if growth.value is not None else None, growth_basis=growth.basis)


def recommend(analysis: ProfileAnalysis, scales=HARDWARE_SCALES) -> list[HardwareRow]:
    return [recommend_row(analysis, n) for n in scales]


def describe_row(row: HardwareRow) -> str:
    """One line for the guidance text."""
    if row.ram_gb is None:
        return f"{fmt.conversations(row.n)}: not enough scales measured to project"
    where = "a distributed setup" if row.distributed else "one machine"
    return (f"{fmt.conversations(row.n)}: {fmt.gigabytes(row.ram_gb)} RAM, {row.cores} cores, "
            f"{fmt.gigabytes(row.disk_gb)} disk on {where} ({row.basis})")
