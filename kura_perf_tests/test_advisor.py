"""The advisor on a hand-made store: its Pareto front, the reasons it gives for dropping the others,
each figure's basis, and a clear refusal when nothing fits."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from kura_perf.cli.main import main
from kura_perf.report.advisor import Limits, NothingFits, advise, parse_scale
from kura_perf.stages.base import STAGES
from kura_perf.store.schema import STAGE_RUNS
from kura_perf.store.writer import write_records

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
LABELS = {1_000: "1k", 10_000: "10k", 100_000: "100k"}

# profile: (wall s per conversation per stage, MB per conversation per stage, ARI, API USD per conversation)
PROFILES = {
    "fast-big": (1e-3, 0.1, 0.80, 0.0),     # fastest, but ~10.6 GB at 100K (decimal GB; 9.9 GiB)
    "slow-small": (4e-3, 0.02, 0.70, 0.0),  # slower, ~2 GB
    "worse": (5e-3, 0.2, 0.60, 0.0),        # slower, bigger and worse than fast-big: dominated
    "api": (2e-3, 0.01, 0.75, 1e-3),        # quick and small, but $100 at 100K
}


def _records(profile, n, shape="full", status="success", figures=None, source=None, day=0, **extra):
    """figures: (wall, MB, ARI, USD per conversation) for a profile not in PROFILES; source: what the
    conversations stage records as its data (extra.source), none when unset (as in old records)."""
    wall_k, mb_k, ari, usd = figures or PROFILES[profile]
    run_id = uuid.uuid4().hex
    out = []
    for i, stage in enumerate(STAGES):
        if source is not None and stage == "conversations":
            extra["extra"] = json.dumps({"source": source})
        else:
            extra.pop("extra", None)
        out.append({
            "record_id": uuid.uuid4().hex, "run_id": run_id, "stage": stage, "shape": shape, "backend": "reference",
            "profile": profile, "profile_hash": profile, "scale": LABELS[n], "scale_n": n, "status": status,
            "started_at": T0 + timedelta(days=day, minutes=i), "finished_at": T0 + timedelta(days=day, minutes=i, seconds=30),
            "wall_s": wall_k * n, "cpu_user_s": wall_k * n, "rss_start_mb": 100.0, "peak_rss_mb": 100.0 + mb_k * n,
            "cost_usd": usd * n if stage == "summaries" else None, "ari": ari if stage == "clusters" else None,
            "metered": True, "host_fingerprint": "host-a", "host_cpu": "Test CPU", "host_cores": 2,
            "host_ram_gb": 24.0, **extra})
    return out


@pytest.fixture
def store(tmp_path):
    metrics = tmp_path / "metrics"
    for profile in PROFILES:
        for n in (1_000, 10_000):
            write_records(metrics, "stage_runs", _records(profile, n))
    write_records(metrics, "stage_runs", _records("slow-small", 100_000))  # measured at the asked scale
    write_records(metrics, "stage_runs", _records("fast-big", 1_000, shape="minimal"))  # not a candidate
    return metrics


def _verdicts(advice):
    return {c.name: c.verdict for c in advice.candidates}


def test_the_pareto_front_and_why_the_others_were_dropped(store):
    advice = advise(store, 100_000)
    verdicts = _verdicts(advice)
    assert {c.name for c in advice.recommended} == {"fast-big", "slow-small", "api"}
    assert verdicts["worse"].startswith("dropped: dominated by fast-big (faster")
    by_name = {c.name: c for c in advice.candidates}
    assert by_name["slow-small"].hours.basis == "measured"
    assert by_name["slow-small"].hours.value == pytest.approx(6 * 4e-3 * 100_000 / 3600)
    assert by_name["fast-big"].hours.basis == "extrapolated"
    assert by_name["fast-big"].hours.value == pytest.approx(6 * 1e-3 * 100_000 / 3600, rel=1e-6)
    assert by_name["fast-big"].ram_gb.value == pytest.approx((100 + 0.1 * 100_000) * 2**20 / 1e9, rel=1e-6)  # MiB -> decimal GB
    assert by_name["api"].cost_usd.value == pytest.approx(100.0, rel=1e-6)
    # quality is never carried to a scale it was not measured at (it can collapse in between)
    assert by_name["api"].ari.value is None and by_name["api"].ari.basis == "not measured"
    assert by_name["api"].ari.text(str) == "not measured at 100K (measured at 1K, 10K)"
    assert by_name["slow-small"].ari.value == pytest.approx(0.70)  # measured at 100K
    table = advice.table()
    assert list(table["candidate"][:3]) == ["fast-big", "api", "slow-small"]  # recommended first, by time
    assert "(measured)" in table.set_index("candidate").loc["slow-small", "time"]


@pytest.mark.slow
def test_limits_drop_candidates_and_name_the_limit(store):
    advice = advise(store, 100_000, Limits(max_ram_gb=8, max_cost=50))
    verdicts = _verdicts(advice)
    assert [c.name for c in advice.recommended] == ["slow-small"]
    assert verdicts["fast-big"].startswith("dropped: breaks --max-ram 8 (needs 10.6 GB, extrapolated)")
    assert verdicts["api"] == "dropped: breaks --max-cost 50 (needs $100.00, extrapolated)"
    assert "breaks --max-ram 8" in verdicts["worse"]
    # ARI is measured at 10K only (never carried to 100K), so --min-ari is tried where it was measured
    assert [c.name for c in advise(store, 10_000, Limits(min_ari=0.78)).recommended] == ["fast-big"]


@pytest.mark.slow
def test_refuses_clearly_when_nothing_fits(store, monkeypatch, capsys):
    advice = advise(store, 100_000, Limits(max_hours=0.1))
    assert advice.recommended == []
    message = advice.refusal()
    assert "no recorded profile fits 100K conversations with --max-hours 0.1" in message
    assert "slow-small: breaks --max-hours 0.1 (needs 40.0 min, measured)" in message
    monkeypatch.setenv("KURA_PERF_HOME", str(store.parent))
    assert main(["advise", "--scale", "100k", "--max-hours", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "no recorded profile fits" in err and "Traceback" not in err
    assert main(["advise", "--scale", "100k", "--max-ram", "8", "--max-cost", "50"]) == 0
    assert "recommended: slow-small" in capsys.readouterr().out


def test_an_empty_store_and_one_scale_are_refused_with_the_reason(tmp_path):
    with pytest.raises(NothingFits, match="no runs recorded"):
        advise(tmp_path / "metrics", 10_000)
    write_records(tmp_path / "m2", "stage_runs", _records("api", 1_000))
    advice = advise(tmp_path / "m2", 100_000)
    assert advice.recommended == [] and "one measured scale" in advice.candidates[0].verdict
    only = advise(tmp_path / "m2", 1_000)  # measured there, but nothing to compare it with
    assert only.recommended == [] and [c.name for c in only.fitting] == ["api"]
    assert only.candidates[0].verdict == "only profile measured"


@pytest.mark.skipif("projected_wall_s" not in STAGE_RUNS.names, reason="the store has no projection columns yet")
def test_a_run_stopped_at_the_scale_gives_projected_figures(store):
    stopped = _records("worse", 100_000, status="breaking_point")
    for r in stopped:
        r.update(projected_wall_s=r["wall_s"] * 2, projection_kind="linear", items_done=50_000)
    write_records(store, "stage_runs", stopped)
    worse = next(c for c in advise(store, 100_000).candidates if c.name == "worse")
    assert worse.hours.basis == "projected"
    assert worse.hours.value == pytest.approx(6 * 2 * 5e-3 * 100_000 / 3600)


def test_scales_parse():
    assert [parse_scale(s) for s in ("100k", "1M", "2500", "10K")] == [100_000, 1_000_000, 2500, 10_000]
    with pytest.raises(Exception, match="not a number"):
        parse_scale("lots")


def test_the_report_compares_shapes_and_shows_the_advice(store, tmp_path):
    from kura_perf.report.analysis import analyse
    from kura_perf.report.html import render_section
    from kura_perf.report.sections import SectionBuilder
    from kura_perf.report.shapes_advice import shape_totals

    write_records(store, "stage_runs", _records("fast-big", 1_000, shape="custom") + [
        {**_records("fast-big", 1_000, shape="custom")[0], "stage": "custom_step", "wall_s": 0.5}])
    from kura_perf.report.data import load_report_data

    totals = shape_totals(load_report_data(store).runs)
    at_1k = totals[(totals["profile"] == "fast-big") & (totals["scale_n"] == 1_000)].set_index("shape")
    assert list(at_1k.index) == ["minimal", "full", "custom"]
    assert at_1k.loc["minimal", "wall_s"] == pytest.approx(4 * 1e-3 * 1_000)
    assert at_1k.loc["custom", "wall_s"] == pytest.approx(6 * 1e-3 * 1_000 + 0.5)
    assert at_1k.loc["full", "vs_full"] == pytest.approx(1.0)
    builder = SectionBuilder(analyse(load_report_data(store)), tmp_path)  # the two sections, without the figures
    shapes = render_section(builder.shapes())
    assert "minimal" in shapes and "custom" in shapes and "wall vs full" in shapes
    advisor = render_section(builder.advisor())
    assert "100K conversations" in advisor and "10K conversations" in advisor and "dominated by fast-big" in advisor


# -- the data behind quality -------------------------------------------------------------------------
SYNTHETIC, REAL = "synthetic(seed=0)", "/data/team/chats.jsonl"


def _store_with_sources(metrics, candidates):
    """candidates: {profile: (figures, source)} recorded at 1K and 10K."""
    for profile, (figures, source) in candidates.items():
        for n in (1_000, 10_000):
            write_records(metrics, "stage_runs", _records(profile, n, figures=figures, source=source))
    return metrics


def test_the_advice_names_the_data_its_quality_came_from(tmp_path, monkeypatch, capsys):
    metrics = _store_with_sources(tmp_path / "metrics", {"a": ((1e-3, 0.1, 0.9, 0.0), SYNTHETIC),
                                                         "b": ((2e-3, 0.05, 0.8, 0.0), SYNTHETIC)})
    advice = advise(metrics, 10_000)
    assert {c.name: c.ari_data for c in advice.candidates} == {"a": "synthetic corpus (seed 0)",
                                                                "b": "synthetic corpus (seed 0)"}
    assert not advice.real_quality
    note = advice.quality_note()
    assert note.startswith("Quality (ARI) scored on synthetic corpus (seed 0) for a, b.")
    assert "No real-data records at this scale: quality ranks on the synthetic corpus" in note
    assert list(advice.table()["ARI data"]) == ["synthetic corpus (seed 0)"] * 2
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    assert main(["advise", "--scale", "10k"]) == 0
    out = capsys.readouterr().out
    assert "ARI data" in out and "Quality (ARI) scored on synthetic corpus (seed 0)" in out


def test_old_records_without_a_source_say_the_data_is_unknown(store):
    advice = advise(store, 10_000)
    assert {c.ari_data for c in advice.candidates} == {"data unknown"}
    assert advice.quality_note().startswith("Quality (ARI) scored on data unknown for ")


def test_real_data_quality_is_preferred_and_synthetic_quality_alone_is_not_ranked(tmp_path):
    # "synth" is slower but has the better ARI, on the synthetic corpus only; "real" is faster, scored on
    # a real data file. Ranked on synthetic ARI both would stand; ranked on real-data quality only, "synth"
    # is no better on anything that counts and is dropped.
    metrics = _store_with_sources(tmp_path / "metrics", {"synth": ((2e-3, 0.1, 0.95, 0.0), SYNTHETIC),
                                                         "real": ((1e-3, 0.1, 0.55, 0.0), REAL)})
    advice = advise(metrics, 10_000)
    by_name = {c.name: c for c in advice.candidates}
    assert advice.real_quality
    assert by_name["real"].ari_data == "real data: chats.jsonl" and by_name["real"].ari_ranked
    assert by_name["synth"].ari_data == "synthetic corpus (seed 0), not ranked" and not by_name["synth"].ari_ranked
    assert by_name["synth"].ari.value == pytest.approx(0.95)  # still shown
    assert [c.name for c in advice.recommended] == ["real"]
    assert by_name["synth"].verdict == "dropped: dominated by real (faster)"
    note = advice.quality_note()
    assert "real data: chats.jsonl for real" in note and "synthetic corpus (seed 0) for synth" in note
    assert "Ranked on real-data quality only; synthetic-only ARI (synth) is shown but not ranked." in note

    limited = {c.name: c.verdict for c in advise(metrics, 10_000, Limits(min_ari=0.5)).candidates}
    assert limited["real"] == "recommended"
    assert limited["synth"].startswith("dropped: --min-ari 0.5: no real-data ARI at this scale (synthetic corpus only")


def test_a_profile_with_real_and_synthetic_records_is_judged_on_the_real_ones(tmp_path):
    metrics = tmp_path / "metrics"
    figures = (1e-3, 0.1, 0.9, 0.0)
    for n in (1_000, 10_000):
        write_records(metrics, "stage_runs", _records("p", n, figures=figures, source=SYNTHETIC))
    write_records(metrics, "stage_runs", _records("p", 1_000, figures=(1e-3, 0.1, 0.4, 0.0), source=REAL, day=1))
    ari = next(c for c in advise(metrics, 10_000).candidates).ari
    assert ari.value is None  # not the synthetic 0.9 measured at 10K, nor the real 0.4 carried from 1K
    assert ari.basis == "not measured" and ari.note == "not measured at 10K on real data (measured at 1K)"
    assert next(c for c in advise(metrics, 1_000).candidates).ari.value == pytest.approx(0.4)


def test_a_run_that_reused_stored_conversations_takes_their_source(tmp_path):
    metrics = tmp_path / "metrics"
    figures = (1e-3, 0.1, 0.7, 0.0)
    write_records(metrics, "stage_runs", _records("p", 1_000, figures=figures, source=REAL))
    later = [r for r in _records("p", 10_000, figures=figures, day=1)]  # no conversations record of its own run
    conversations = [r for r in _records("p", 10_000, figures=figures, source=REAL) if r["stage"] == "conversations"]
    write_records(metrics, "stage_runs", conversations + [r for r in later if r["stage"] != "conversations"])
    assert next(c for c in advise(metrics, 10_000).candidates).ari.data == REAL


def test_a_missing_source_read_back_as_nan_is_unknown_not_a_crash():
    """pandas turns a missing data source into NaN once record frames are combined; the report crashed on it."""
    from kura_perf.report.advisor import describe_source, is_real, is_synthetic

    nan = float("nan")
    assert not is_real(nan) and not is_synthetic(nan) and describe_source(nan) == "data unknown"
    assert is_real("/data/chats.jsonl") and is_synthetic("synthetic(seed=0)")
