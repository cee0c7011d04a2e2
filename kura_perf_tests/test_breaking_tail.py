"""Projections past the largest measured scale take the tail into account (report/fits.py): one power law over
100 / 1K / 10K is dominated by fixed overhead and waiting at the small scales and hid Kura's O(n²) contrastive
sampling in clusters (global fit n^0.70, CPU n^1.49 from 1K to 10K). Synthetic records, no clock read.
"""

from __future__ import annotations

import pytest

from kura_perf.report import breaking
from kura_perf.report.fits import EXTRAPOLATED
from kura_perf.report.tables import projection_1m_table
from kura_perf_tests.test_breaking_points import analysis_of
from kura_perf_tests.test_results import record, write_run

# The kura-defaults clusters medians this fix was made for: work and CPU (user + sys) seconds per scale.
KURA_CLUSTERS = {100: (5.5, 1.7), 1_000: (11.8, 3.7), 10_000: (139.6, 114.0)}


def _results(folder, stages: dict[str, dict[int, tuple[float, float]]]) -> None:
    """offline records (no API, no stage timeout: the 24 h practical bound), one run per scale, each stage's
    work and CPU seconds given per scale; memory small and flat."""
    scales = sorted({n for per_scale in stages.values() for n in per_scale})
    for i, n in enumerate(scales):
        write_run(folder, [record(stage, n, per_scale[n][0], 5.0, run=f"t{n}", at=i * 10 + j,
                                  cpu_user_s=per_scale[n][1], cpu_sys_s=0.0)
                           for j, (stage, per_scale) in enumerate(stages.items()) if n in per_scale])


def _linear(per_conversation_s: float, cpu_share: float) -> dict[int, tuple[float, float]]:
    return {n: (per_conversation_s * n, cpu_share * per_conversation_s * n) for n in (100, 1_000, 10_000)}


def test_a_sublinear_global_fit_with_a_superlinear_cpu_tail_breaks_at_1m_on_time_and_names_the_tail(tmp_path):
    _results(tmp_path / "results", {"clusters": KURA_CLUSTERS})
    pa = analysis_of(tmp_path / "results", tmp_path).profiles["offline"]
    fit = pa.fits["clusters"]
    assert fit.wall.exponent == pytest.approx(0.70, abs=0.01)
    assert fit.wall.predict(1_000_000) < breaking.PRACTICAL_BOUND_S  # the global fit alone: no break at 1M
    assert fit.cpu_tail.exponent == pytest.approx(1.49, abs=0.01)
    v = breaking.verdict(pa, 1_000_000)
    assert (v.first.stage, v.first.resource, v.first.basis) == ("clusters", "time", EXTRAPOLATED)
    assert "by CPU tail n^1.49 (1K→10K) > practical bound" in v.first.detail
    # 114 s of CPU at 10K grown as n^1.49 (the 10K stage waited: work 139.6 s > CPU, so no parallel discount)
    expected = 114.0 * 100 ** fit.cpu_tail.exponent
    assert fit.wall_at(1_000_000).value == pytest.approx(expected)
    assert fit.wall_at(100_000).value == pytest.approx(114.0 * 10 ** fit.cpu_tail.exponent)
    assert "by CPU tail n^1.49" in breaking.verdict(pa, 100_000).time.text
    table = projection_1m_table(analysis_of(tmp_path / "results", tmp_path))
    assert any("by CPU tail n^1.49 (1K→10K)" in cell.text for row in table.rows for cell in row)


def test_the_cpu_tail_is_turned_into_wall_by_the_parallelism_at_the_largest_scale(tmp_path):
    # two cores busy at 10K (CPU = 2 x work), CPU growing n^1.5 from 1K: the wall grows as CPU / 2
    stage = {100: (10.0, 10.0), 1_000: (20.0, 200.0 / 10 ** 1.5), 10_000: (100.0, 200.0)}
    _results(tmp_path / "results", {"clusters": stage})
    fit = analysis_of(tmp_path / "results", tmp_path).profiles["offline"].fits["clusters"]
    assert fit.cpu_tail.exponent == pytest.approx(1.5)
    assert fit.wall_at(1_000_000).value == pytest.approx(200.0 * 100 ** 1.5 * 0.5)


@pytest.mark.parametrize("cpu_share", [0.3, 1.0, 2.0])  # waiting, one core, two cores
def test_a_stage_whose_tail_is_linear_keeps_the_global_fits_projection(tmp_path, cpu_share):
    _results(tmp_path / "results", {"embeddings": _linear(0.01, cpu_share)})
    pa = analysis_of(tmp_path / "results", tmp_path).profiles["offline"]
    fit = pa.fits["embeddings"]
    for n in (100_000, 1_000_000):
        estimate = fit.wall_at(n)
        assert estimate.value == pytest.approx(fit.wall.predict(n))
        assert (estimate.note, estimate.method) == (fit.wall.describe(), "")
    assert " by " not in breaking.verdict(pa, 1_000_000).time.text
    assert "super-linear CPU" not in breaking.verdict(pa, 1_000_000).evidence.text


def test_the_evidence_shows_the_tail_exponents_and_flags_superlinear_cpu(tmp_path):
    _results(tmp_path / "results", {"clusters": KURA_CLUSTERS})
    pa = analysis_of(tmp_path / "results", tmp_path).profiles["offline"]
    evidence = breaking.verdict(pa, 1_000_000).evidence.text
    assert evidence.startswith("clusters: time n^0.70 from 3 scales")
    assert "tail (1K→10K): time n^1.07, CPU n^1.49; super-linear CPU (n^1.49)" in evidence


def test_two_scales_keep_the_old_rule_no_tail_projection(tmp_path):
    _results(tmp_path / "results", {"clusters": {n: KURA_CLUSTERS[n] for n in (1_000, 10_000)}})
    fit = analysis_of(tmp_path / "results", tmp_path).profiles["offline"].fits["clusters"]
    assert fit.time_projection(1_000_000) is None
    assert fit.wall_at(1_000_000).value == pytest.approx(fit.wall.predict(1_000_000))


def test_the_evidence_names_a_superlinear_cpu_tail_of_a_stage_other_than_the_one_it_describes(tmp_path):
    # summaries is the slowest at 100K (linear, 1 s per conversation) and clusters hides n^1.49 CPU behind it
    _results(tmp_path / "results", {"summaries": _linear(1.0, 0.2), "clusters": KURA_CLUSTERS})
    pa = analysis_of(tmp_path / "results", tmp_path).profiles["offline"]
    evidence = breaking.verdict(pa, 100_000).evidence.text
    assert evidence.startswith("summaries: time n^1.00")
    assert evidence.endswith("; also super-linear CPU: clusters (n^1.49, 1K→10K)")
