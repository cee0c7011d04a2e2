"""The filled matrix: projected cells apart from measured and fitted ones, memory against theory (§3.1),
and Kura beside the reference at every scale, from hand-made stores."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from kura_perf.report import tables as t
from kura_perf.report.analysis import analyse
from kura_perf.report.data import load_report_data
from kura_perf.report.fits import EXTRAPOLATED, PROJECTED
from kura_perf.report.html import CSS, LEGEND, render_table
from kura_perf.report.sections import SectionBuilder
from kura_perf.report.theory import explain, theoretical_bytes, total_bytes
from kura_perf.store import write_records
from kura_perf_tests.test_report import PageParser, _stage_record, write_synthetic_store

REPO = Path(__file__).resolve().parents[1]

# -- theory ------------------------------------------------------------------------------------------


def test_theoretical_bytes_are_the_proposal_hotspots():
    n, d, k = 10_000, 1536, 500
    emb = {h.name: h.bytes for h in theoretical_bytes("embeddings", n, d, k)}
    assert emb["embedding matrix (embed_summaries peak)"] == n * d * 4  # §3.1: N × 1536 × 4 bytes
    clusters = {h.name: h.bytes for h in theoretical_bytes("clusters", n, d, k)}
    assert clusters["numpy conversion for clustering (float64 copy)"] == n * d * 8
    assert clusters["HDBSCAN core distances: k-NN distances + indices"] == n * 10 * 16
    kmeans = {h.name for h in theoretical_bytes("clusters", n, d, k, clustering="kmeans")}
    assert not any("HDBSCAN" in name for name in kmeans) and "k-means centres and labels" in kmeans
    meta = {h.name: h.bytes for h in theoretical_bytes("meta_clusters", n, d, k)}
    assert meta["meta-cluster re-embedding of cluster names"] == k * d * 4  # depends on k, not N
    assert total_bytes(theoretical_bytes("meta_clusters", 10 * n, d, k)) == total_bytes(theoretical_bytes(
        "meta_clusters", n, d, k))
    for stage in ("conversations", "summaries", "embeddings", "projections"):  # row-wise: linear in N
        assert total_bytes(theoretical_bytes(stage, 2 * n, d, k)) == 2 * total_bytes(theoretical_bytes(stage, n, d, k))
    # Streamed, the row-wise stages hold one batch whatever N is.
    assert total_bytes(theoretical_bytes("embeddings", 100_000, 384, k, batch=1000)) == total_bytes(
        theoretical_bytes("embeddings", 1000, 384, k))
    with pytest.raises(ValueError, match="unknown stage"):
        theoretical_bytes("nope", n, d, k)


def test_explanations_name_the_reason():
    assert explain("embeddings", 100.0, 90.0).startswith("close to theory")
    assert "embedding model" in explain("embeddings", 500.0, 15.0)
    assert "Python object overhead" in explain("conversations", 40.0, 5.0)
    assert "streamed" in explain("summaries", 0.5, 5.0, streamed=True)


# -- projected cells ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The report tests' store plus Kura at 1k and 5k, and a Kura 10k run whose summaries stopped at a
    time limit with a projection, and whose 50k embeddings failed without one."""
    root = tmp_path_factory.mktemp("matrix")
    write_synthetic_store(root)
    records, i = [], 100
    for label, n in (("1k", 1000), ("5k", 5000)):
        i += 1
        for stage in ("conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections"):
            api = stage in ("summaries", "clusters", "meta_clusters")
            records.append(_stage_record(i, f"kura6-{label}", stage, n, label, profile="kura", backend="kura",
                                         noise=1.6, api_calls=n if api else None, cost_usd=0.0003 * n if api else None,
                                         ari=0.11 if stage == "clusters" else None))
    i += 1
    records.append(_stage_record(i, "kura-10k", "conversations", 10_000, "10k", profile="kura", backend="kura"))
    records.append(_stage_record(i, "kura-10k", "summaries", 10_000, "10k", profile="kura", backend="kura",
                                 status="breaking_point", error_type="BreakingPoint",
                                 error_message="breaking point in stage 'summaries': time limit 600 s",
                                 wall_s=600.0, items_in=10_000, items_done=4_100, projected_wall_s=1463.4,
                                 projection_kind="linear-in-items", api_calls=4_439, api_429s=0))
    i += 1
    records.append(_stage_record(i, "kura-50k", "conversations", 50_000, "50k", profile="kura", backend="kura"))
    records.append(_stage_record(i, "kura-50k", "summaries", 50_000, "50k", profile="kura", backend="kura",
                                 status="failed", error_type="KuraFailure", wall_s=82.0, api_calls=4_439,
                                 api_429s=44, error_message="summaries: Kura's summarise_conversations failed: "
                                                            "RateLimitError (after 4439 API calls: 44 answered 429)"))
    write_records(root / "metrics", "stage_runs", records)
    return SimpleNamespace(root=root, analysis=analyse(load_report_data(root / "metrics")))


def _cells(table):
    return [[(c.text, c.kind) for c in row] for row in table.rows]


def test_projected_cells_are_labelled_apart_from_measured_and_fitted(store):
    kura = store.analysis.profiles["kura"]
    matrix = {row[0].text: row for row in t.test_matrix(kura).rows}
    ten_k = matrix["10K"]
    assert ten_k[5].kind == PROJECTED and "summaries stopped, projected" in ten_k[5].text
    # 10K's total: conversations measured + summaries projected + later stages fitted: the weakest wins.
    assert ten_k[4].kind == EXTRAPOLATED
    assert matrix["1K"][4].kind == "measured"  # plain on the page
    assert matrix["50K"][5].kind == "bad" and "summaries failed" in matrix["50K"][5].text
    offline = {row[0].text: row for row in t.test_matrix(store.analysis.profiles["offline"]).rows}
    assert offline["50K"][5].kind == EXTRAPOLATED and offline["50K"][5].text == "fitted, not run"
    assert offline["50K"][4].kind == EXTRAPOLATED
    breakdown = {row[0].text: row for row in t.stage_breakdown(kura).rows}
    header = t.stage_breakdown(kura).headers
    cell = breakdown["summaries"][header.index("10K")]
    assert cell.kind == PROJECTED and "24.4 min projected" in cell.text and "4,100/10,000 items" in cell.text
    assert kura.stage_wall_at("summaries", 10_000).value == pytest.approx(1463.4)
    assert kura.stage_wall_at("summaries", 1000).basis == "measured"
    broken = t.breaking_points_table(store.analysis.data.runs)
    row = next(r for r in broken.rows if r[0].text == "summaries" and r[2].text == "10K")
    assert (row[7].text, row[8].kind) == ("4,100/10,000", PROJECTED) and "linear-in-items" in row[8].text
    from kura_perf.store import query

    view = query(store.root / "metrics", "SELECT * FROM breaking_points WHERE profile = 'kura' AND scale = '10k'")
    assert view[["items_done", "projected_wall_s", "projection_kind"]].iloc[0].tolist() == [
        4_100, pytest.approx(1463.4), "linear-in-items"]
    md = broken.to_markdown()
    assert "*(projected)*" in md
    # On the page: the kinds carry their own classes (shaded apart by the CSS), and the legend names all three.
    page = PageParser()
    page.feed(render_table(t.test_matrix(kura), "m") + render_table(broken, "b"))
    classes = {cls for rows in page.tables.values() for r in rows for cls, _ in r}
    assert {"projected", "extrapolated", "measured"} <= classes
    assert "td.projected" in CSS and "td.extrapolated" in CSS
    assert all(f"<b>{kind}</b>" in LEGEND for kind in ("measured", "projected", "extrapolated"))


def test_memory_theory_table_puts_growth_beside_the_hotspots(store):
    offline = store.analysis.profiles["offline"]
    table = t.memory_theory_table(offline)
    rows = {r[0].text: r for r in table.rows}
    assert set(rows) == {"conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections"}
    emb = rows["embeddings"]
    assert emb[1].text == "10K" and "N × d × 4" in emb[4].text and "d=384" in emb[4].text
    assert emb[3].text == "14.6 MB" or emb[3].text.endswith("MB")  # 10k × 384 × 4 + summaries text
    assert emb[5].text.endswith("×") and emb[6].text
    theory = SectionBuilder(store.analysis, store.root).memory_theory()
    assert any('id="theory-offline"' in part for part in theory.parts)


# -- Kura beside the reference -------------------------------------------------------------------------


def test_compare_view_at_every_scale_has_ratios_outcomes_and_largest_completed(store, capsys):
    from kura_perf.report.compare import compare_scales

    table = compare_scales(store.root / "metrics", "reference:offline", "kura:kura")
    assert table["scale"].unique().tolist() == ["100", "1k", "5k", "10k", "50k"]  # either side's scales, in order
    at = table.set_index(["scale", "stage"])
    one_k = at.loc[("1k", "total")]
    assert one_k["outcome_left"] == one_k["outcome_right"] == "completed"
    kura_1k = [r for r in _kura_records(store) if r["run_id"] == "kura6-1k"]  # the latest 1k run
    assert one_k["wall_s_right"] == pytest.approx(sum(r["wall_s"] for r in kura_1k))
    assert one_k["wall_s_ratio"] == pytest.approx(one_k["wall_s_right"] / one_k["wall_s_left"])
    assert one_k["peak_rss_mb_right"] == pytest.approx(max(r["peak_rss_mb"] for r in kura_1k))
    assert one_k["cost_usd_right"] == pytest.approx(0.3 * 3) and one_k["ari_right"] == pytest.approx(0.11)
    assert at.loc[("5k", "total")]["outcome_left"] == "not run"  # the reference never ran 5k: shown, not dropped
    assert at.loc[("10k", "summaries")]["outcome_right"] == "stopped at a limit, 1,463 s projected"
    assert at.loc[("50k", "summaries")]["outcome_right"] == "rate-limited (failed after 44 × 429)"
    assert at.loc[("50k", "summaries")]["api_429s_right"] == 44
    assert "summaries: rate-limited" in at.loc[("50k", "total")]["outcome_right"]
    assert (table.attrs["largest_completed_left"], table.attrs["largest_completed_right"]) == (10_000, 5_000)
    # The CLI prints the same, with the finding called out; the report carries it as a table.
    from kura_perf.cli.main import main

    with pytest.MonkeyPatch.context() as env:
        env.setenv("KURA_PERF_HOME", str(store.root))
        assert main(["compare", "reference:offline", "kura:kura"]) == 0
    out = capsys.readouterr().out
    assert "largest scale completed within the limits: L 10K, R 5K" in out
    assert "measured finding (50k, tier × scale): R: summaries rate-limited (failed after 44 × 429)" in out
    side = t.side_by_side_table(store.analysis.data.runs, "reference:offline", "kura:kura")
    finding = [c for row in side.rows for c in row if "measured tier × scale outcome" in c.text]
    assert finding and finding[0].kind == "bad"
    assert any(c.kind == PROJECTED for row in side.rows for c in row)
    assert t.comparison_pairs(store.analysis.data.runs) == [("reference:offline", "kura:kura")]


def test_a_kura_failure_message_counts_as_the_rate_limit_finding():
    from kura_perf.report.compare import stage_outcome

    message = ("summaries: Kura's summarise_conversations failed: APIStatusError <- RateLimitError: Error code: 429 "
               "(after 4439 API calls: 44 answered 429, 0 other errors)")
    assert stage_outcome({"status": "failed", "api_429s": None, "error_message": message}) == \
        "rate-limited (failed after 44 × 429)"
    assert stage_outcome({"status": "failed", "api_429s": 0, "error_message": "disk full"}) == "failed"
    assert stage_outcome(None) == "not run"


def _kura_records(store):
    from kura_perf.store import query

    return query(store.root / "metrics", "SELECT * FROM stage_runs WHERE profile = 'kura'").to_dict("records")


# -- the matrix command --------------------------------------------------------------------------------


def test_matrix_table_marks_completed_projected_and_failed(store, monkeypatch, capsys):
    from kura_perf.cli.main import main

    monkeypatch.setenv("KURA_PERF_HOME", str(store.root))
    assert main(["matrix", "--table-only", "--scales", "1k", "10k", "50k", "--profiles", "offline", "kura"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("- Host: Test CPU 3000, 8 cores, 34 GB (32 GiB) RAM (host hostA)")
    assert "Code version(s) measured: abc0, abc1, abc2" in out
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in out.splitlines()
             if line.startswith("| ")}
    assert "| completed |" in lines[("reference (offline)", "10K")]
    assert "projected: summaries stopped at 10.0 min" in lines[("kura (kura)", "10K")]
    assert "*(projected)*" in lines[("kura (kura)", "10K")]
    assert "failed: summaries rate-limited (failed after 44 × 429)" in lines[("kura (kura)", "50K")]
    assert "*(extrapolated)*" in lines[("reference (offline)", "50K")]  # fitted, never run
    assert "$0.90" in lines[("kura (kura)", "1K")]  # cost per 1K conversations: 3 API stages × $0.30
    assert (store.root / "matrix.md").read_text().strip() in out


@pytest.mark.slow
def test_matrix_runs_each_partition_in_its_own_process_and_goes_on_after_a_failure(tmp_path, monkeypatch, capsys):
    from kura_perf.cli.main import main

    profiles = tmp_path / "profiles.toml"
    broken = tmp_path / "conversations.jsonl"  # passes the pre-flight (a regular file), fails in the stage
    broken.write_text("not json\n")
    profiles.write_text(f'[broken]\ndata_file = "{broken}"\n')
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    assert main(["matrix", "--scales", "100", "1k", "--profiles", "broken", "--profiles-file", str(profiles)]) == 0
    out = capsys.readouterr().out
    assert "0/2 partitions completed; 2 failed or stopped" in out
    for scale in ("100", "1k"):  # the second partition ran although the first failed
        log = (tmp_path / "data" / "matrix-logs" / f"broken-{scale}.log").read_text()
        assert f"{broken}, line 1" in log
        assert f"| reference (broken) | {scale.upper() if scale != '100' else '100'} |" in out
    assert out.count("failed: conversations failed") == 2
