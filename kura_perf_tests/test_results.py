"""Results committed as data (issue 19): results/ -> the README's Measured section, the refusals of records
without host or version (publish and `results add`) or contended ones (`results add`), and the 1M column
fitted over measured scales only, with exponent and R²."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kura_perf.report import fmt
from kura_perf.results import publish as pub
from kura_perf.results.records import ResultsError, add_runs, read_results, record_line, repo_results_dir, store_records
from kura_perf.store.record import StageRecord

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
HOST = dict(host_fingerprint="hostq", host_cpu="Test CPU", host_cores=2, host_ram_gb=24.0,
            host_os="Linux 6.1.0-test")
VERSIONS = dict(code_version="abc123def456", package_versions=json.dumps({"python": "3.11.7", "numpy": "2.0"}))


def record(stage: str, n: int, wall: float, growth_mb: float, *, run: str, at: int, profile="offline",
           contended=False, **changes) -> StageRecord:
    """A successful, quiet stage record; `at` minutes after T0 (records never overlap in time)."""
    start = T0 + timedelta(minutes=at)
    base = dict(record_id=f"{run}-{stage}", run_id=run, stage=stage, backend="reference", profile=profile,
                profile_hash="h1", scale=fmt.conversations(n).lower(), scale_n=n, status="success",
                started_at=start, finished_at=start + timedelta(seconds=30), wall_s=wall, stage_work_s=wall,
                cpu_user_s=wall * 0.9, cpu_sys_s=0.1, rss_start_mb=500.0, peak_rss_mb=500.0 + growth_mb,
                peak_method="vmhwm", metered=True, items_in=n, bytes_written=n * 100, cost_usd=0.0, api_calls=0,
                host_other_cpu_s=0.5 if not contended else 40.0, host_contention=0.01 if not contended else 0.4,
                contended=contended, **HOST, **VERSIONS)
    return StageRecord(**(base | changes))


def write_run(folder: Path, records: list[StageRecord]) -> Path:
    return add_runs({records[0].run_id: records}, folder, allow_contended=True)[0]


def scaling_results(folder: Path) -> None:
    """offline at 1K, 10K, 100K: embeddings time = 0.002·n^1.2 and growth = 0.01·n MB (three scales, exact
    power laws); clusters measured at two scales only; one contended 10K record of an absurd time."""
    minutes = 0
    for n in (1_000, 10_000, 100_000):
        rows = [record("embeddings", n, 0.002 * n ** 1.2, 0.01 * n, run=f"r{n}", at=minutes)]
        if n < 100_000:
            rows.append(record("clusters", n, 0.5 * n ** 0.5, 5.0, run=f"r{n}", at=minutes + 1))
        write_run(folder, rows)
        minutes += 10
    write_run(folder, [record("embeddings", 10_000, 99_999.0, 1.0, run="busy", at=minutes, contended=True)])


# -- the committed README -------------------------------------------------------------------------------


def test_the_readme_measured_section_is_what_results_generates():
    """Whatever results/ holds: the README's generated section must be exactly what publish makes of it.
    A number edited by hand in the README, or a record added without `kura-perf publish`, fails here."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert pub.current_section(readme) == pub.generate(repo_results_dir()).section.strip(), (
        "README.md's Measured section differs from results/: run `kura-perf publish --no-report` and commit")


def test_an_empty_results_folder_says_nothing_is_published(tmp_path):
    assert pub.generate(tmp_path / "results").section == pub.NOTHING_PUBLISHED
    assert "No measurement is published yet" in pub.NOTHING_PUBLISHED


def test_publish_rewrites_only_between_the_markers_and_is_deterministic(tmp_path):
    results = tmp_path / "results"
    scaling_results(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\nprose kept\n{pub.BEGIN}\n| old | 1 |\n{pub.END}\ntail kept\n")
    first = pub.publish(results, readme).section
    text = readme.read_text()
    assert text.startswith("# top\nprose kept\n" + pub.BEGIN + "\n") and text.endswith(pub.END + "\ntail kept\n")
    assert "| old | 1 |" not in text
    assert pub.generate(results).section == first  # no clock, no paths: the same files give the same text
    assert pub.current_section(text) == first.strip()
    assert str(tmp_path) not in first


def test_publish_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(pub.ReadmeMarkersError, match="results:begin"):
        pub.publish(tmp_path / "results", readme)


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing, reason", [("host_fingerprint", "no host fingerprint"), ("host_cpu", "no host"),
                                             ("code_version", "no code version"),
                                             ("package_versions", "no code version")])
def test_publish_refuses_a_record_without_host_or_version(tmp_path, missing, reason, capsys):
    results = tmp_path / "results"
    results.mkdir()
    good = record("embeddings", 1_000, 2.0, 10.0, run="r1", at=0)
    bad = record("clusters", 1_000, 2.0, 10.0, run="r1", at=1, **{missing: None})
    (results / "2026-12-07_offline_1k_r1.jsonl").write_text(record_line(good) + "\n" + record_line(bad) + "\n")
    with pytest.raises(ResultsError, match=reason) as refused:
        pub.generate(results)
    assert "line 2" in str(refused.value) and "2026-12-07_offline_1k_r1.jsonl" in str(refused.value)

    from kura_perf.cli.main import main

    readme = tmp_path / "README.md"
    readme.write_text(f"{pub.BEGIN}\nkept\n{pub.END}\n")
    assert main(["publish", "--results", str(results), "--readme", str(readme), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0] and "Traceback" not in err[0]
    assert readme.read_text() == f"{pub.BEGIN}\nkept\n{pub.END}\n"  # nothing half-written


def test_results_add_refuses_contended_unknown_load_and_missing_host_with_one_line(tmp_path):
    folder = tmp_path / "results"
    quiet = record("embeddings", 1_000, 2.0, 10.0, run="r1", at=0)
    busy = record("clusters", 1_000, 2.0, 10.0, run="r1", at=1, contended=True)
    with pytest.raises(ResultsError, match=r"contended \(other processes took 40% of the box"):
        add_runs({"r1": [quiet, busy]}, folder)
    assert not folder.exists() or not list(folder.iterdir())  # nothing added
    older = busy.replace(contended=None, host_contention=None, host_other_cpu_s=None)
    with pytest.raises(ResultsError, match="host load not measured"):
        add_runs({"r1": [quiet, older]}, folder)
    with pytest.raises(ResultsError, match="no host fingerprint"):
        add_runs({"r1": [quiet.replace(host_os=None)]}, folder, allow_contended=True)
    died = record("summaries", 1_000, 0.0, 0.0, run="r1", at=2, status="died", contended=None,
                  host_contention=None, wall_s=None)
    written = add_runs({"r1": [quiet, busy, died]}, folder, allow_contended=True)
    assert [r.record.record_id for r in read_results(folder)] == ["r1-embeddings", "r1-clusters", "r1-summaries"]
    assert written[0].name == "2026-12-07_offline_1k_r1.jsonl"
    assert add_runs({"r1": [quiet, died]}, folder) == written  # a died record has no load to disturb: accepted


def test_results_add_from_a_metrics_store_by_run_id_and_latest(tmp_path, capsys):
    from kura_perf.cli.main import main
    from kura_perf.store.stage_records import write_stage_record

    metrics = tmp_path / "metrics"
    write_stage_record(metrics, record("embeddings", 1_000, 2.0, 10.0, run="early", at=0))
    write_stage_record(metrics, record("embeddings", 10_000, 20.0, 100.0, run="late", at=5))
    runs = store_records(metrics, None, latest=True)
    assert list(runs) == ["late"] and runs["late"][0].wall_s == 20.0
    folder = tmp_path / "results"
    assert main(["results", "add", "--store", str(metrics), "--run-id", "early", "--results", str(folder)]) == 0
    back = read_results(folder)
    assert len(back) == 1 and back[0].record.run_id == "early" and back[0].record.host_cpu == "Test CPU"
    assert main(["results", "add", "--store", str(metrics), "--run-id", "nope", "--results", str(folder)]) == 2
    assert "no stage records of run nope" in capsys.readouterr().err


# -- the published tables: uncontended only, 1M from fits over measured scales ---------------------------


def _rows(section: str, first: str) -> dict[str, list[str]]:
    """Markdown rows whose first cell is `first`, keyed by their second cell."""
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] == first:
            out.setdefault(cells[1], cells)
    return out


def test_published_tables_leave_contended_records_out_and_say_how_many(tmp_path):
    results = tmp_path / "results"
    scaling_results(results)
    section = pub.generate(results).section
    assert "1 excluded as contended" in section
    assert "From 6 stage records in 4 files" in section
    assert fmt.seconds(99_999.0) not in section  # the busy record's time is in no table
    assert "Python 3.11.7" in section and "abc123def456" in section and "Test CPU" in section


def test_the_1m_column_comes_from_fits_over_three_measured_scales_with_exponent_and_r2(tmp_path):
    results = tmp_path / "results"
    scaling_results(results)
    section = pub.generate(results).section
    fits = section[section.index("**1M, projected"):]
    embeddings = _rows(fits, "reference (offline)")["embeddings"]
    assert embeddings[2] == "1K, 10K, 100K"
    assert embeddings[3] == "n^1.20" and embeddings[4] == "1.000"  # time exponent and R²
    assert embeddings[5] == f"{fmt.seconds(0.002 * 1e6 ** 1.2)} *(projected)*"
    assert embeddings[6] == "n^1.00" and embeddings[7] == "1.000"  # growth exponent and R²
    assert embeddings[8] == f"{fmt.megabytes(500.0 + 0.01 * 1e6)} *(projected)*"
    clusters = _rows(fits, "reference (offline)")["clusters"]
    assert "needs ≥3 measured scales (has 2)" in clusters[5]  # two points always fit: no 1M from them
    assert "pipeline" not in _rows(fits, "reference (offline)")  # no total when a stage has no 1M figure


def test_a_stopped_stage_projection_never_feeds_the_1m_fit(tmp_path):
    """An interrupted 100K run with a projected wall time is a projected cell: the fit stays on the two
    measured scales and gives no 1M figure."""
    results = tmp_path / "results"
    for i, n in enumerate((1_000, 10_000)):
        write_run(results, [record("embeddings", n, 0.002 * n ** 1.2, 0.01 * n, run=f"m{n}", at=i * 10)])
    stopped = record("embeddings", 100_000, 60.0, 900.0, run="s", at=30, status="interrupted",
                     projected_wall_s=5_000.0, projection_kind="linear-in-items", items_done=1_000,
                     items_total=100_000)
    write_run(results, [stopped])
    section = pub.generate(results).section
    fits = section[section.index("**1M, projected"):]
    assert "needs ≥3 measured scales (has 2)" in _rows(fits, "reference (offline)")["embeddings"][5]
    matrix = section[:section.index("**1M, projected")]
    assert "*(projected)*" in _rows(matrix, "reference (offline)")["100K"][-1]  # labelled where it is shown


def test_results_add_treats_a_record_another_run_overlapped_as_contended(tmp_path):
    from kura_perf.store.stage_records import write_stage_record

    metrics = tmp_path / "metrics"
    write_stage_record(metrics, record("embeddings", 1_000, 2.0, 10.0, run="a", at=0))
    beside = record("embeddings", 1_000, 2.0, 10.0, run="b", at=0)  # same minute, same host: overlapping
    write_stage_record(metrics, beside.replace(record_id="b-embeddings"))
    runs = store_records(metrics, ["a"], latest=False)
    assert runs["a"][0].contended is True
    with pytest.raises(ResultsError, match="contended .another run's stage ran beside it"):
        add_runs(runs, tmp_path / "results")


def test_kura_versions_are_published_side_by_side_with_ratios_verdicts_and_the_scaled_label(tmp_path):
    """Two Kura specs on the same partition (as `kura-perf versions` records them) become one table in the
    Measured section: each spec's figures, its ratio to the first spec, a verdict; a sped-up simulator's
    times are labelled scaled. Records without a spec make no versions table."""
    results = tmp_path / "results"
    scaling_results(results)
    assert "Kura versions side by side" not in pub.generate(results).section
    kura = dict(backend="kura", profile="kura-defaults-scaled", sim_speed_factor=10.0)
    for i, (spec, version, calls) in enumerate([("kura==0.5.2", "0.5.2", 100), ("kura==0.5.4", "0.5.4", 200)]):
        write_run(results, [record("summaries", 1_000, 10.0, 50.0, run=f"v{i}", at=100 + 10 * i, kura_spec=spec,
                                   kura_version=version, kura_resolved=version, api_calls=calls, **kura)])
    section = pub.generate(results).section
    block = section[section.index("**Kura versions side by side: kura-defaults-scaled at 1k**"):]
    assert "kura==0.5.2 vs kura==0.5.4" in block and "scaled x10, not a prediction" in block
    rows = [line for line in block.splitlines() if line.startswith("|") and "summaries" in line]
    assert len(rows) == 2 and "0.5.4" in rows[1]
    assert "200 · ×2.00" in rows[1] and "calls more" in rows[1]
