"""The performance report: built from synthetic records with known power laws, checked for the
figures it must recover, and looked at for real in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kura_perf.report import fmt
from kura_perf.report.analysis import analyse
from kura_perf.report.build import build_report
from kura_perf.report.data import load_report_data
from kura_perf.report.fits import EXTRAPOLATED, MEASURED, fit_power_law
from kura_perf.settings.paths import Paths
from kura_perf.store import write_records

STAGES = ["conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections"]
WALL_EXPONENT = {"conversations": 1.0, "summaries": 1.05, "embeddings": 0.95, "clusters": 1.2,
                 "meta_clusters": 0.5, "projections": 1.1}
GROWTH_EXPONENT = 0.9
BYTES_PER_CONVERSATION = {"conversations": 3000, "summaries": 800, "embeddings": 1560, "clusters": 60,
                          "meta_clusters": 20, "projections": 40}
HOST = {"host_fingerprint": "hostA", "host_cpu": "Test CPU 3000", "host_cores": 8, "host_ram_gb": 32.0,
        "host_os": "Linux"}
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _stage_record(i: int, run_id: str, stage: str, n: int, label: str, *, profile="offline", backend="reference",
                  noise=1.0, code="abc0", host=HOST, **overrides) -> dict:
    wall = 0.002 * n ** WALL_EXPONENT[stage] * noise
    start = 300.0 + 10 * STAGES.index(stage)
    peak = start + 0.05 * n ** GROWTH_EXPONENT
    ts = T0 + timedelta(hours=i)
    record = {
        "record_id": f"r{i}-{stage}", "run_id": run_id, "stage": stage, "backend": backend, "profile": profile,
        "scale": label, "scale_n": n, "status": "success", "started_at": ts,
        "finished_at": ts + timedelta(seconds=wall), "wall_s": wall, "cpu_user_s": wall * 1.5,
        "cpu_sys_s": wall * 0.1, "rss_start_mb": start, "peak_rss_mb": peak,
        "mem_timeline_s": list(np.linspace(0, wall, 20)),
        "mem_timeline_mb": list(start + (peak - start) * np.linspace(0, 1, 20) ** 0.5),
        "items_in": n, "items_out": n, "items_per_s": n / wall, "bytes_written": n * BYTES_PER_CONVERSATION[stage],
        "n_clusters": n // 20 if stage == "clusters" else None,
        "extra": json.dumps({"dimension": 384} if stage == "embeddings" else {"roots": 7}),
        "code_version": code, **host,
    }
    record.update(overrides)
    return record


def write_synthetic_store(root: Path) -> None:
    """offline at 100/1k/10k (three runs at 1k, ±3% noise), an API profile, a kura-backend run, a
    breaking point, a concurrency sweep, and one record from another machine."""
    rng = np.random.default_rng(7)
    records, i = [], 0
    plan = [("100", 100, 0), ("1k", 1000, 0), ("10k", 10_000, 0), ("1k", 1000, 1), ("1k", 1000, 2)]
    for label, n, rep in plan:
        i += 1
        run = f"offline-{label}-{rep}"
        for stage in STAGES:
            noise = float(rng.uniform(0.97, 1.03))
            records.append(_stage_record(i, run, stage, n, label, noise=noise, code=f"abc{rep}"))
    for label, n in (("100", 100), ("1k", 1000)):
        i += 1
        for stage in STAGES:
            api = stage in ("summaries", "embeddings")
            records.append(_stage_record(i, f"api-{label}", stage, n, label, profile="simulated-openai",
                                         api_calls=n // 10 if api else 0, api_429s=n // 100 if api else 0,
                                         cost_usd=0.0004 * n if api else 0.0))
    i += 1
    for stage in STAGES[:4]:
        records.append(_stage_record(i, "kura-1k", stage, 1000, "1k", profile="kura", backend="kura", noise=1.4,
                                     ari=0.8 if stage == "clusters" else None))
    i += 1
    records.append(_stage_record(i, "agglo-50k", "clusters", 50_000, "50k", profile="agglomerative",
                                 status="breaking_point", error_type="BreakingPoint",
                                 error_message="breaking point in stage 'clusters': RSS 28000 MB over the limit"))
    records.append(_stage_record(i + 1, "elsewhere", "clusters", 100, "100",
                                 host={**HOST, "host_fingerprint": "hostB", "host_cpu": "Other CPU"}))
    write_records(root / "metrics", "stage_runs", records)
    sweeps = [{"record_id": f"s{c}", "run_id": "sweep", "recorded_at": T0 + timedelta(days=3, minutes=c),
               "profile": "simulated-openai", "scale": "1k", "stage": "embeddings", "concurrency": c, "items": 1000,
               "wall_s": 60 / c, "items_per_min": 1000 * c * (0.9 if c > 10 else 1.0),
               "share_429": 0.0 if c < 20 else 0.12,
               "api_calls": 100, "api_429s": 0 if c < 20 else 12, "cost_per_1k_conversations": 0.4, "status": "success",
               "host_fingerprint": "hostA", "code_version": "abc0"} for c in (1, 5, 10, 20, 50)]
    write_records(root / "metrics", "sweep_results", sweeps)
    # Per-level quality: offline 1k (base + two meta levels; the base is the topic level) and kura 1k.
    levels = [{"record_id": "q-off", "run_id": "offline-1k-0", "stage": "meta_clusters", "backend": "reference",
               "profile": "offline", "scale": "1k", "scale_n": 1000, "finished_at": T0 + timedelta(hours=2),
               "level": lv, "n_clusters": k, "noise_share": 0.02, "true_topics": 48, "ari": ari, "nmi": 0.9,
               "homogeneity": 0.95, "completeness": 0.9, "topics_found": 0.9, "silhouette": 0.2,
               "is_topic_level": lv == 0, **HOST} for lv, k, ari in ((0, 47, 0.91), (1, 24, 0.5), (2, 12, 0.2))]
    levels.append({**levels[0], "record_id": "q-kura", "run_id": "kura-1k", "stage": "clusters", "backend": "kura",
                   "profile": "kura", "n_clusters": 100, "ari": 0.6, "noise_share": 0.0})
    write_records(root / "metrics", "quality_levels", levels)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    write_synthetic_store(root)
    result = build_report(Paths(root))
    return SimpleNamespace(root=root, result=result, html=result.index_html.read_text(encoding="utf-8"),
                           analysis=analyse(load_report_data(root / "metrics")))


class PageParser(HTMLParser):
    """Tables (id -> rows of cell texts, with cell classes) and image sources, from a page or a DOM dump."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self.images: list[str] = []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id") or f"table-{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [a.get("class") or "", ""]
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append((self._cell[0], self._cell[1].strip()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


# -- fits ------------------------------------------------------------------------------------------

def test_power_law_fit_recovers_the_exponent_and_needs_two_scales():
    ns = [100, 1000, 10_000]
    fit = fit_power_law(ns, [0.003 * n ** 1.2 for n in ns])
    assert fit.exponent == pytest.approx(1.2, abs=1e-9)
    assert fit.predict(1_000_000) == pytest.approx(0.003 * 1e6 ** 1.2)
    assert fit.basis(1_000_000) == EXTRAPOLATED
    assert fit_power_law([1000, 1000], [1.0, 1.1]) is None  # one distinct scale: no slope
    assert fit_power_law([], []) is None


def test_synthetic_exponents_are_recovered_and_extrapolations_labelled(report):
    offline = report.analysis.profiles["offline"]
    for stage, expected in WALL_EXPONENT.items():
        assert offline.fits[stage].wall.exponent == pytest.approx(expected, abs=0.05), stage
        assert offline.fits[stage].growth.exponent == pytest.approx(GROWTH_EXPONENT, abs=0.05), stage
    clusters = offline.fits["clusters"]
    assert clusters.wall_at(10_000).basis == MEASURED
    assert clusters.wall_at(1_000_000).basis == EXTRAPOLATED
    fits = parse(report.html).tables["fits-offline"]
    header = [text for _, text in fits[0]]
    row = dict(zip(header, fits[[r[0][1] for r in fits].index("clusters")]))
    assert float(row["Time exponent"][1].removeprefix("n^")) == pytest.approx(1.2, abs=0.05)
    assert row["Time @ 1M"][0] == "extrapolated" and row["Peak @ 1M"][0] == "extrapolated"
    assert "extrapolated" in report.html


def test_one_scale_is_reported_without_a_fit(report):
    kura = report.analysis.profiles["kura"]
    assert not kura.can_fit and kura.fits["clusters"].wall is None
    assert kura.fits["clusters"].wall_at(1_000_000).value is None
    assert "a fit needs at least two distinct scales" in report.html


# -- contents --------------------------------------------------------------------------------------

def test_empty_store_gives_a_helpful_page(tmp_path):
    result = build_report(Paths(tmp_path))
    page = result.index_html.read_text()
    assert result.empty and result.figures == [] and result.main_figure is None
    assert "No runs recorded yet" in page and "kura-perf run --scale 1k" in page
    assert "kura-perf run --scale 1k" in result.headline_markdown


def test_a_store_with_only_failures_still_builds(tmp_path):
    write_records(tmp_path / "metrics", "stage_runs", [_stage_record(
        1, "r", "conversations", 100, "100", status="failed", error_type="ImportError",
        error_message="cannot import name <generate>")])
    result = build_report(Paths(tmp_path))
    page = result.index_html.read_text()
    assert not result.empty and "No successful stage runs yet" in result.headline_markdown
    assert "cannot import name &lt;generate&gt;" in page  # the cause is shown, escaped


def test_storage_table_is_bytes_over_conversations(report):
    rows = parse(report.html).tables["storage-offline"]
    by_stage = {row[0][1]: row for row in rows[1:]}
    for stage, per_conv in BYTES_PER_CONVERSATION.items():
        assert by_stage[stage][1][1] == fmt.kilobytes(per_conv / 1000), stage
        assert by_stage[stage][2][1] == "10K"  # measured at the largest scale
    total = sum(BYTES_PER_CONVERSATION.values()) / 1000
    assert by_stage["total"][1][1] == fmt.kilobytes(total)
    assert by_stage["total"][3][1] == "10–15 kB"
    assert by_stage["embeddings"][3][1].startswith("1.50 kB (384-d")  # §1.3's 6 kB rescaled from 1536-d


def test_matrix_headline_and_host_provenance(report):
    matrix = parse(report.html).tables["matrix-offline"]
    scales = [row[0][1] for row in matrix[1:]]
    assert scales == ["100", "1K", "5K", "10K", "50K"]  # §1.2's 5K and 50K projected
    row_5k = matrix[1 + scales.index("5K")]
    assert row_5k[3][0] == "interpolated" and row_5k[4][0] == "interpolated"
    assert matrix[1 + scales.index("10K")][2][1].startswith("500")  # clusters found
    assert "| offline | 10K |" in report.result.headline_markdown
    assert "Test CPU 3000, 8 cores, 34 GB (32 GiB) RAM" in report.html
    assert "Other CPU" not in report.html and "left out" in report.html  # another machine's record is not mixed in


def test_quality_is_shown_per_level_with_the_topic_level_marked(report):
    rows = parse(report.html).tables["quality-levels"]
    body = [[text for _, text in row] for row in rows[1:]]
    offline = [r for r in body if r[0] == "offline"]
    # rows written without truth_level (as before truth levels) read as the one truth level 'topic'
    assert [r[2] for r in offline] == ["topic"] * 3 and [r[6] for r in offline] == ["48"] * 3
    assert [r[3] for r in offline] == ["0 ★", "1", "2"] and [r[4] for r in offline] == ["47", "24", "12"]
    assert offline[0][7] == "0.910"  # ARI at the topic level
    assert any(r[0] == "kura" and r[3] == "0 ★" for r in body)  # a clusters-only run: its base level


def test_breaking_points_appear(report):
    rows = parse(report.html).tables["breaking-points"]
    assert [c[1] for c in rows[1][:4]] == ["clusters", "agglomerative", "50K", "breaking_point"]
    assert "RSS 28000 MB over the limit" in rows[1][4][1]
    assert "Breaking points recorded on this host" in report.html


def test_regression_history_has_one_row_per_run_in_order(report):
    rows = parse(report.html).tables["history"]
    assert len(rows) == 1 + 3  # header + three runs of offline × 1K
    assert [r[1][1] for r in rows[1:]] == ["abc0", "abc1", "abc2"]
    started = [r[0][1] for r in rows[1:]]
    assert started == sorted(started)


def test_api_costs_backends_and_hardware(report):
    tables = parse(report.html).tables
    cost = {r[0][1]: r for r in tables["costs"][1:]}
    assert cost["simulated-openai"][5][1] == fmt.usd(0.4 * 2)  # summaries + embeddings, $0.0004 per conversation each
    assert len(tables["sweeps"]) == 1 + 5
    assert any("kura" in h for _, h in tables["backends"][0])
    hardware = {r[0][1]: r for r in tables["hardware"][1:]}
    assert set(hardware) == {"1K", "10K", "100K", "1M"}
    assert hardware["1K"][8][1] == "measured" and hardware["1M"][8][1] == "extrapolated"
    assert "64 GB+" in hardware["1M"][9][1]


def test_a_failed_build_keeps_the_previous_report(tmp_path, monkeypatch):
    first = build_report(Paths(tmp_path))
    before = first.index_html.read_text()

    def explode(*_args, **_kw):
        raise RuntimeError("boom")

    write_records(tmp_path / "metrics", "stage_runs", [_stage_record(1, "r", "conversations", 100, "100")])
    monkeypatch.setattr("kura_perf.report.build.build_sections", explode)
    with pytest.raises(RuntimeError):
        build_report(Paths(tmp_path))
    assert first.index_html.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics", "reports"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [".kura-perf-report.json", "index.html"]


def test_a_folder_that_is_not_a_report_keeps_its_files(tmp_path):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    build_report(Paths(tmp_path), precious)
    assert (precious / "thesis.tex").read_text() == "keep me" and (precious / "index.html").is_file()


def test_report_command_prints_where_it_is(tmp_path, monkeypatch, capsys):
    from kura_perf.cli.report import report_command

    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    assert report_command(SimpleNamespace(out=str(tmp_path / "elsewhere"))) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "elsewhere" / "index.html") in out and "kura-perf run --scale 1k" in out


# -- the real look ---------------------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(binary: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,2000", *extra, url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("chromium did not finish within 60 s")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian package `chromium`); "
                                                 "the report's rendering cannot be checked here")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    binary, index = _chromium(), report.result.index_html
    url = index.as_uri()
    dom = _run_chromium(binary, url, "--dump-dom").stdout
    page = parse(dom)
    check_structure(dom)  # as rendered: no placeholder-only section, one Host box, plain headings, units
    for table_id in ("headline", "matrix-offline", "breakdown-offline", "fits-offline", "storage-offline",
                     "hardware", "history", "breaking-points", "costs", "backends"):
        assert len(page.tables.get(table_id, [])) >= 2, f"table {table_id} missing from the rendered DOM"
    assert len(page.images) == len(report.result.figures) >= 6
    for src in page.images:
        image = index.parent / src
        assert image.exists(), src
        assert image.read_bytes()[:8] == PNG_MAGIC, src
        with Image.open(image) as img:
            img.verify()
    assert report.result.main_figure is not None and report.result.main_figure.name.startswith("scaling-")

    shot = tmp_path / "report.png"
    _run_chromium(binary, url, f"--screenshot={shot}")
    assert shot.exists() and shot.read_bytes()[:8] == PNG_MAGIC
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10, "screenshot is blank"
    assert (pixels < 100).mean() > 0.005, "no dark text or lines on the page"
    shutil.copy(shot, report.root / "screenshot.png")  # kept beside the store for a human look


def test_the_page_structure(report):
    """Issue 20 item 7 on the full synthetic store: every section has content or is one line naming the
    command that fills it; the Host box once; no heading cites the proposal by section sign; units."""
    check_structure(report.html)


def check_structure(page: str) -> None:
    from kura_perf_tests.test_report_quality import check_structure as check  # that module imports this one

    check(page)


def test_page_is_self_contained(report):
    page = report.html
    assert not re.search(r"""(src|href)=["']https?://""", page), "external resource in the page"
    assert "<script" not in page
    for src in parse(page).images:
        assert "/" not in src  # relative files beside index.html
