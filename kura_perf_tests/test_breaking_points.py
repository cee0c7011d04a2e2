"""Where each backend breaks (issue 19 item 4), from synthetic records: report/breaking.py, shown by publish.

Records are exact power laws, so the fits (and the scale where a peak crosses a tier) follow from them; no
test reads a clock.
"""

from __future__ import annotations

import pytest

from kura_perf.errors import ProfileError
from kura_perf.meter.units import MIB
from kura_perf.profiles import get_profile, parse_profiles
from kura_perf.report import breaking, fmt
from kura_perf.report.analysis import analyse
from kura_perf.report.data import load_report_data
from kura_perf.results import publish as pub
from kura_perf_tests.test_results import _rows, record, write_run

GB_MIB = 10**9 / MIB  # one decimal GB in the MiB records carry


def memory_results(folder, scales=(1_000, 10_000, 100_000)) -> None:
    """offline: embeddings' peak grows as n^1.0 from 1 GB at 10K (start RSS 0, so the process peak is the
    growth); clusters small and flat. Both measured at `scales`."""
    for i, n in enumerate(scales):
        write_run(folder, [
            record("embeddings", n, 0.001 * n, n / 10_000 * GB_MIB, run=f"m{n}", at=i * 10, rss_start_mb=0.0,
                   peak_rss_mb=n / 10_000 * GB_MIB),
            record("clusters", n, 0.002 * n, 50.0, run=f"m{n}", at=i * 10 + 1),
        ])


def analysis_of(folder, tmp_path):
    metrics = pub._scratch_store(pub.read_results(folder), tmp_path / "scratch")
    return analyse(load_report_data(metrics))


def test_a_peak_growing_linearly_from_1gb_at_10k_fits_16gb_up_to_100k_measured_and_160k_projected(tmp_path):
    results = tmp_path / "results"
    memory_results(results)
    pa = analysis_of(results, tmp_path).profiles["offline"]
    answers = {gb: breaking.tier_answer(pa, gb) for gb in (4, 16, 64)}
    assert answers[4].text == f"up to 10K measured (100K peaks at {fmt.megabytes(10 * GB_MIB)})"
    assert answers[16].text == "up to 100K measured; ≈ 160K projected"
    assert answers[16].kind == "projected"
    assert answers[64].text == "up to 100K measured; ≈ 640K projected"


def test_the_peak_over_the_proposals_1m_machine_is_named_as_the_memory_break(tmp_path):
    results = tmp_path / "results"
    memory_results(results)
    pa = analysis_of(results, tmp_path).profiles["offline"]
    at_100k = breaking.verdict(pa, 100_000)
    assert at_100k.first is None and at_100k.first_cell().text.startswith("no stage breaks")
    assert at_100k.memory.text.startswith(f"{fmt.megabytes(10 * GB_MIB)} (embeddings): over 4 GB; fits 16 GB, 64 GB")
    at_1m = breaking.verdict(pa, 1_000_000)
    assert (at_1m.first.stage, at_1m.first.resource, at_1m.first.basis) == ("embeddings", "memory", "extrapolated")
    assert "> the proposal's 64 GB machine for 1M" in at_1m.first.detail
    assert "n^1.00" in at_1m.evidence.text and "R² 1.000" in at_1m.evidence.text  # the growth fit, with R²


def test_a_died_record_at_100k_is_the_measured_break_with_its_cause_and_caps_the_tiers(tmp_path):
    results = tmp_path / "results"
    stages = ("summaries", "embeddings", "clusters", "meta_clusters")
    for i, n in enumerate((100, 1_000, 10_000)):
        write_run(results, [record(stage, n, 0.01 * n, 0.05 * n, run=f"k{n}", at=i * 10 + j, profile="kura-tier5",
                                   backend="kura", api_calls=n // 50 if stage == "meta_clusters" else 0)
                            for j, stage in enumerate(stages)])
    write_run(results, [record("clusters", 100_000, 900.0, 20_000.0, run="k100k", at=40, profile="kura-tier5",
                               backend="kura", status="died", error_type="WorkerLost",
                               error_message="the process was killed (SIGKILL)")])
    pa = analysis_of(results, tmp_path).profiles["kura-tier5"]
    v = breaking.verdict(pa, 100_000)
    assert (v.first.stage, v.first.resource, v.first.scale_n) == ("clusters", "measured stop", 100_000)
    assert v.first_cell().text.startswith("measured break at 100K: clusters: measured stop: died, killed")
    assert "WorkerLost the process was killed (SIGKILL)" in v.first.detail
    # At 1M an earlier stage breaks first (a million summaries wait longer than kura-tier5's 3 h stage
    # timeout by predict's model); the measured stop at 100K is still named behind it.
    v = breaking.verdict(pa, 1_000_000)
    assert (v.first.stage, v.first.resource) == ("summaries", "API calls")
    assert v.first_cell().text.endswith("; later, measured: clusters died at 100K")
    # the meta-cluster loop's calls at each measured scale, and their growth
    meta = breaking.verdict(pa, 100_000).meta_calls.text
    assert meta.startswith("2 / 20 / 200 at 100 / 1K / 10K: n^1.00 from 3 scales") and "≈ 2,000 at 100K" in meta
    # a peak that would fit 64 GB by the fits is still capped below the scale a stage was killed at
    assert breaking.tier_answer(pa, 64).text == "up to 10K measured; below 100K (a stage stopped there, measured)"


def test_api_waiting_over_the_stage_timeout_is_an_api_break(tmp_path):
    results = tmp_path / "results"
    for i, n in enumerate((100, 1_000, 10_000)):
        write_run(results, [record("summaries", n, 0.01 * n, 10.0, run=f"a{n}", at=i * 10, profile="slow-api",
                                   api_calls=n, tokens_in=450 * n, tokens_out=120 * n)])
    profile = parse_profiles({"slow-api": {"summary_model": "openai:gpt-4o-mini", "stage_timeout_s": 3600,
                                           "api": {"simulate": True, "concurrency": 500, "simulator": {"burst_s": 1,
                                                                                   "chat": {"rpm": 600, "tpm": 10**9}}}}},
                             "t.toml")["slow-api"]
    pa = analysis_of(results, tmp_path).profiles["slow-api"]
    v = breaking.verdict(pa, 100_000, profile)
    assert (v.first.stage, v.first.resource) == ("summaries", "API calls")
    assert "100,000 calls need" in v.first.detail and "RPM binds" in v.first.detail
    assert "> stage_timeout_s" in v.first.detail
    # a profile no shipped or given file defines: its limits are unknown, said so
    assert breaking.verdict(pa, 100_000).api.text == "profile not shipped: its limits are unknown"


def test_fewer_than_three_measured_scales_give_no_answer(tmp_path):
    results = tmp_path / "results"
    memory_results(results, scales=(1_000, 10_000))
    pa = analysis_of(results, tmp_path).profiles["offline"]
    for n in (100_000, 1_000_000):
        cell = breaking.verdict(pa, n).first_cell()
        assert cell.text.startswith("not enough measured scales (needs ≥3): embeddings (has 2), clusters (has 2)")
        assert cell.kind == "unknown"
    assert breaking.tier_answer(pa, 64).text.startswith("up to 10K measured; beyond: not enough measured scales")


def test_publish_shows_both_tables_and_stays_deterministic(tmp_path):
    results = tmp_path / "results"
    memory_results(results)
    section = pub.generate(results).section
    assert section == pub.generate(results).section
    verdicts = section[section.index("**Breaking points at 100K and 1M"):section.index("**The proposal's 4 / 16 / 64 GB machines")]
    rows = _rows(verdicts, "reference (offline)")
    assert rows["1M"][2].startswith("embeddings: memory: peak") and rows["1M"][2].endswith("*(extrapolated)*")
    assert rows["100K"][2].startswith("no stage breaks")
    tiers = section[section.index("**The proposal's 4 / 16 / 64 GB machines"):]
    tier_row = next(line for line in tiers.splitlines() if line.startswith("| reference (offline)"))
    assert "up to 100K measured; ≈ 160K projected *(projected)*" in tier_row


# -- Kura's MiniBatchKMeans option ----------------------------------------------------------------------

def test_kura_minibatch_selects_kuras_minibatch_kmeans_and_the_reference_refuses_it():
    pytest.importorskip("kura")
    from kura.k_means import MiniBatchKmeansClusteringMethod

    from kura_perf.backends.kura_models import KuraModels

    profile = get_profile("kura-minibatch")
    assert profile.model_dump(exclude={"name", "description", "clustering"}) == \
        get_profile("kura-tier5").model_dump(exclude={"name", "description", "clustering"})
    assert isinstance(KuraModels(profile).clustering_method(), MiniBatchKmeansClusteringMethod)
    with pytest.raises(ProfileError, match="'minibatch-kmeans' is Kura's own method: set backend = 'kura'"):
        parse_profiles({"x": {"clustering": "minibatch-kmeans"}}, "t.toml")
    with pytest.raises(ProfileError, match="'max_iters' not taken by Kura's minibatch-kmeans"):
        parse_profiles({"x": {"backend": "kura", "clustering": "minibatch-kmeans", "summary_model": "openai:m",
                              "naming_model": "openai:m", "clustering_params": {"max_iters": 5}}}, "t.toml")


def test_a_stop_the_stage_later_got_past_is_not_a_break(tmp_path):
    results = tmp_path / "results"
    memory_results(results)
    write_run(results, [record("clusters", 10_000, 5.0, 50.0, run="ctrl-c", at=100, status="interrupted",
                               error_type="KeyboardInterrupt", error_message="")])
    pa = analysis_of(results, tmp_path).profiles["offline"]
    assert breaking.measured_stop(pa, "clusters", 100_000) is None  # clusters completed at 100K
    assert breaking.verdict(pa, 100_000).first is None


def test_the_reports_breaking_section_shows_both_tables_even_with_no_failure(tmp_path):
    from kura_perf.report.sections import SectionBuilder

    results = tmp_path / "results"
    memory_results(results)
    section = SectionBuilder(analysis_of(results, tmp_path), tmp_path / "figures").breaking_points()
    html = "".join(section.parts)
    assert not section.empty and 'id="breaking-verdicts"' in html and 'id="breaking-tiers"' in html
    assert "up to 100K measured; ≈ 160K projected" in html
