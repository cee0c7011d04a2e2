"""Issue 20, items 2 and 7: quality stands beside time and memory, a collapse is called out in words, the
advisor neither recommends a lone profile nor carries an ARI to a scale it was not measured at, and the
page's structure (empty sections as one line, one Host box, plain headings, code versions named).

Every store here is fabricated (kura_perf_tests/test_report.py's records); every check reads the page
built from it, the advice, or the `advise` command's output.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from kura_perf.cli.main import main
from kura_perf.report.advisor import advise
from kura_perf.report.build import build_report
from kura_perf.report.quality_trend import QualityPoint, collapses
from kura_perf.settings.paths import Paths
from kura_perf.store import write_records
from kura_perf_tests.test_report import STAGES, _stage_record, parse

SCALES = (("1k", 1_000), ("10k", 10_000), ("100k", 100_000))
COLLAPSING = {1_000: (0.97, 0.01), 10_000: (0.968, 0.02), 100_000: (0.344, 0.19)}  # issue 20: 0.968 → 0.344
HOLDING = {1_000: (0.97, 0.01), 10_000: (0.96, 0.02), 100_000: (0.93, 0.03)}


def write_store(root: Path, quality: dict[int, tuple[float, float]], profiles=("offline",),
                with_levels: bool = True) -> Path:
    """Each profile as a full pipeline at 1K, 10K and 100K; the clusters record and the per-level rows
    (finest truth level 'intent' below a coarse 'domain' level) carry `quality` {n: (ARI, noise)}."""
    records, levels, i = [], [], 0
    for profile in profiles:
        for label, n in SCALES:
            i += 1
            run = f"{profile}-{label}"
            ari, noise = quality[n]
            for stage in STAGES:
                extra = {"ari": ari, "noise_share": noise} if stage == "clusters" else {}
                records.append(_stage_record(i, run, stage, n, label, profile=profile, code="c0de1234",
                                             shape="full", **extra))
            for rank, truth in enumerate(("domain", "intent")):
                levels.append({"record_id": f"q-{run}", "run_id": run, "stage": "meta_clusters",
                               "backend": "reference", "profile": profile, "scale": label, "scale_n": n,
                               "finished_at": records[-1]["finished_at"], "level": 0, "truth_level": truth,
                               "truth_rank": rank, "true_classes": 10 if rank == 0 else 150,
                               "n_clusters": n // 10, "noise_share": noise, "true_topics": 150,
                               # the coarse level scores high: the figure must be the finest level's
                               "ari": 0.99 if rank == 0 else ari, "nmi": 0.9, "homogeneity": 0.9,
                               "completeness": 0.9, "topics_found": 0.9, "silhouette": 0.2,
                               "is_topic_level": True, "host_fingerprint": "hostA", "host_cpu": "Test CPU 3000",
                               "host_cores": 8, "host_ram_gb": 32.0, "host_os": "Linux"})
    write_records(root / "metrics", "stage_runs", records)
    if with_levels:
        write_records(root / "metrics", "quality_levels", levels)
    return root


def _build(root: Path) -> SimpleNamespace:
    result = build_report(Paths(root))
    page = result.index_html.read_text(encoding="utf-8")
    return SimpleNamespace(result=result, html=page, sections=sections(page),
                           summary=page[page.index('id="summary"'):page.index("<nav>")])


@pytest.fixture(scope="module")
def collapsing(tmp_path_factory):
    return _build(write_store(tmp_path_factory.mktemp("collapsing"), COLLAPSING))


@pytest.fixture(scope="module")
def holding(tmp_path_factory):
    return _build(write_store(tmp_path_factory.mktemp("holding"), HOLDING))


# -- the page's sections, read structurally -----------------------------------------------------------

class SectionParser(HTMLParser):
    """Each <section>: id, class, headings, and the tags and text inside it."""

    def __init__(self):
        super().__init__()
        self.sections: list[dict] = []
        self.headings: list[str] = []  # every h1/h2/h3 and contents link on the page
        self._section = None
        self._heading = None
        self._classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = {"id": a.get("id"), "class": a.get("class") or "", "tags": [], "classes": [],
                             "text": ""}
            self.sections.append(self._section)
        elif self._section is not None:
            self._section["tags"].append(tag)
            self._section["classes"].append(a.get("class") or "")
        if tag in ("h1", "h2", "h3") or (tag == "a" and "href" in a and a["href"].startswith("#")):
            self._heading = ""

    def handle_data(self, data):
        if self._section is not None:
            self._section["text"] += data
        if self._heading is not None:
            self._heading += data

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        if tag in ("h1", "h2", "h3", "a") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None


def sections(page: str) -> list[dict]:
    parser = SectionParser()
    parser.feed(page)
    return parser.sections


def headings(page: str) -> list[str]:
    parser = SectionParser()
    parser.feed(page)
    return parser.headings


CONTENT = {"table", "figure", "img", "ul"}


def check_structure(page: str) -> None:
    """No placeholder-only section: each is either one line naming a kura-perf command, or has content
    beyond notes (a table, figure or list, or a paragraph that is not the provenance line); one Host box;
    no heading citing the proposal by section sign; units on the headline's figures."""
    for s in sections(page):
        if "collapsed" in s["class"]:
            assert s["tags"].count("p") == 1 and "code" in s["tags"], s
            assert "kura-perf" in s["text"] or "none on this host" in s["text"], s
            continue
        own = [t for t, c in zip(s["tags"], s["classes"]) if t in CONTENT
               or (t == "p" and c not in ("basis", "answers", "legend", "caption"))]
        assert own, f"section {s['id']} holds only placeholders: {s['text'][:200]}"
    assert page.count("<b>Host:</b>") == 1 and page.count('class="prov"') == 1
    assert not [h for h in headings(page) if "§" in h]
    # Nor anywhere a reader sees it (column headers, captions): the proposal is cited by a link, in words.
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S))
    assert "§" not in html.unescape(visible), [m for m in re.findall(r".{0,60}§.{0,20}", html.unescape(visible))]
    if "headline" in parse(page).tables:
        rows = parse(page).tables["headline"]
        header = [text for _, text in rows[0]]
        for row in rows[1:]:
            cells = dict(zip(header, (text for _, text in row)))
            assert re.search(r"\d( [kMG]B|\s*B)\b", cells["Peak memory"]), cells
            assert re.search(r"\d\s*(ms|s|min|h)\b", cells["Processing time"]), cells


# -- item 2: quality on the first screen, and its collapse in words -----------------------------------

def test_quality_is_in_the_headline_at_every_scale_on_the_finest_truth_level(collapsing):
    rows = parse(collapsing.html).tables["headline"]
    header = [text for _, text in rows[0]]
    quality = header.index("Quality (ARI · noise)")
    assert header.index("Processing time") < quality  # beside time and memory
    by_scale = {row[1][1]: row[quality] for row in rows[1:]}
    assert set(by_scale) == {"1K", "10K", "100K"}
    assert by_scale["10K"][1] == "ARI 0.968 (intent) · noise 2.0%"  # the finest level, not the domain's 0.99
    assert by_scale["100K"][1] == "ARI 0.344 (intent) · noise 19.0% — collapsed" and by_scale["100K"][0] == "bad"
    assert "ARI" in collapsing.result.headline_markdown  # Dagster's headline too


def test_a_collapse_is_called_out_in_the_summary_and_the_guidance(collapsing):
    words = "ARI falls from 0.968 at 10K to 0.344 at 100K, with 19.0% of conversations left as noise"
    assert words in collapsing.summary and 'class="note alert"' in collapsing.summary
    assert collapsing.summary.count(words) == 1  # the alert, not again among the guidance points below it
    guidance = next(s for s in collapsing.sections if s["id"] == "guidance")
    assert words in guidance["text"]


def test_no_collapse_is_called_out_when_quality_holds(holding):
    assert "ARI falls" not in holding.html and "— collapsed" not in holding.html
    assert 'class="note alert"' not in holding.html
    rows = parse(holding.html).tables["headline"]
    assert all("bad" not in cls for row in rows[1:] for cls, _ in row)


def test_the_threshold_is_a_tenth_or_a_quarter_against_the_best_smaller_scale():
    def dropped(*aris):
        return [(c.from_n, c.to_n) for c in collapses("p", [QualityPoint(10 ** (i + 2), a)
                                                            for i, a in enumerate(aris)])]
    assert dropped(0.90, 0.85) == []  # 0.05: noise between runs
    assert dropped(0.90, 0.79) == [(100, 1000)]  # more than 0.10
    assert dropped(0.30, 0.22) == [(100, 1000)]  # 0.08, but more than a quarter of 0.30
    assert dropped(0.90, 0.84, 0.78) == [(100, 10_000)]  # a slide in small steps, against the best
    assert dropped(0.5, 0.9, 0.9) == []  # rising is fine


def test_quality_comes_from_the_clusters_records_when_no_levels_were_recorded(tmp_path):
    built = _build(write_store(tmp_path, COLLAPSING, with_levels=False))
    assert "ARI falls from 0.968 at 10K to 0.344 at 100K" in built.summary


# -- item 2: the advisor ------------------------------------------------------------------------------

def test_one_profile_is_the_only_profile_measured_not_recommended(collapsing, tmp_path, monkeypatch, capsys):
    root = write_store(tmp_path, HOLDING)
    advice = advise(root / "metrics", 100_000)
    assert [c.verdict for c in advice.candidates] == ["only profile measured"] and advice.recommended == []
    monkeypatch.setenv("KURA_PERF_HOME", str(root))
    assert main(["advise", "--scale", "100k"]) == 0
    out = capsys.readouterr().out
    assert "only profile measured: offline" in out and "recommended:" not in out
    advisor_rows = parse(collapsing.html).tables["advisor-100000"]
    verdict = advisor_rows[1][-1]
    assert verdict == ("", "only profile measured")  # not green
    assert not [cls for row in advisor_rows[1:] for cls, text in row if text == "recommended"]


def test_two_profiles_are_compared_and_recommended(tmp_path):
    advice = advise(write_store(tmp_path, HOLDING, profiles=("offline", "other")) / "metrics", 100_000)
    assert advice.recommended  # something to compare: a recommendation again


def test_quality_is_never_extrapolated_and_a_collapse_is_shown_in_the_advice(tmp_path, monkeypatch, capsys):
    root = write_store(tmp_path, COLLAPSING)
    at_1m = advise(root / "metrics", 1_000_000).candidates[0]
    assert at_1m.ari.value is None and at_1m.ari.text(str) == "not measured at 1M (measured at 1K, 10K, 100K)"
    assert at_1m.hours.basis == "extrapolated"  # time may be projected, and says so
    at_100k = advise(root / "metrics", 100_000)
    assert at_100k.candidates[0].ari.warning == "quality collapsed: ARI 0.968 at 10K → 0.344 here"
    monkeypatch.setenv("KURA_PERF_HOME", str(root))
    assert main(["advise", "--scale", "1m"]) == 0
    out = capsys.readouterr().out
    assert "not measured at 1M" in out and "(extrapolated)" in out and "0.344 (extrapolated)" not in out
    assert main(["advise", "--scale", "100k"]) == 0
    assert "quality collapse: offline: quality collapsed: ARI 0.968 at 10K → 0.344 here" in capsys.readouterr().out


# -- item 7: the page's structure -----------------------------------------------------------------

def test_the_page_structure_empty_sections_one_host_box_plain_headings(collapsing):
    check_structure(collapsing.html)
    by_id = {s["id"]: s for s in collapsing.sections}
    assert by_id["stress"]["text"] == "Stress scenarios: none recorded — run kura-perf stress"
    assert "collapsed" in by_id["api"]["class"] and "kura-perf run --scale 1k --profile simulated-openai" in \
        by_id["api"]["text"]
    assert "Answers question 1.2 of the load-testing proposal" in by_id["matrix"]["text"]
    assert "load-testing-proposal.md" in by_id["matrix"]["text"]


def test_an_empty_store_has_no_placeholder_only_section(tmp_path):
    page = build_report(Paths(tmp_path)).index_html.read_text(encoding="utf-8")
    found = sections(page)
    assert [s["text"] for s in found] == ["Stress scenarios: none recorded — run kura-perf stress"]
    for s in found:
        assert "collapsed" in s["class"] and "kura-perf" in s["text"], s


def test_a_failures_only_store_collapses_what_it_cannot_fill(tmp_path):
    write_records(tmp_path / "metrics", "stage_runs", [_stage_record(
        1, "r", "conversations", 100, "100", status="failed", error_type="ImportError", error_message="boom")])
    page = build_report(Paths(tmp_path)).index_html.read_text(encoding="utf-8")
    check_structure(page)
    collapsed = [s["id"] for s in sections(page) if "collapsed" in s["class"]]
    assert {"matrix", "scaling", "storage", "timelines", "api", "quality", "stress", "history"} <= set(collapsed)


def test_the_quality_section_names_the_code_version(collapsing):
    quality = next(s for s in collapsing.sections if s["id"] == "quality")
    assert "code c0de1234" in quality["text"] and "code version unknown" not in quality["text"]
