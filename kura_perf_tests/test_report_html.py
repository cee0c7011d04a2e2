"""The report's HTML comes from Jinja2 templates with autoescape on: text is escaped wherever it lands,
HTML the report built itself is placed as it is."""

from __future__ import annotations

import tomllib
from pathlib import Path

import kura_perf
from kura_perf.report import html
from kura_perf.report.tables import Cell, Table

NASTY = "<script>alert('x')</script> & \"q\""
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;"


def test_text_is_escaped_in_every_part():
    table = Table([NASTY], caption=NASTY)
    table.add(Cell(NASTY, "head"))
    rendered = [html.render_table(table, NASTY), html.note(NASTY), html.paragraph(NASTY), html.heading(NASTY),
                html.profile_heading(NASTY), html.versus_heading(NASTY, NASTY), html.label(NASTY),
                html.render_figure(NASTY, NASTY, NASTY)]
    for fragment in rendered:
        assert "<script>" not in fragment and ESCAPED in fragment, fragment


def test_a_section_escapes_its_title_and_provenance_and_places_its_parts():
    section = html.Section("a", NASTY, provenance=[(NASTY, NASTY)], badge="measured")
    section.add("<p>built by the report</p>")
    page = html.render_section(section)
    assert page.startswith('<section id="a"><h2>' + ESCAPED + '<span class="badge measured">measured</span></h2>')
    assert f'<p class="basis">{ESCAPED}: {ESCAPED}</p>' in page and "<p>built by the report</p>" in page
    assert 'class="prov"' not in page  # the Host/Runs/Figures box is the summary's, once per page


def test_an_empty_section_is_one_line_naming_the_command_that_fills_it():
    section = html.Section("stress", "Stress scenarios", provenance=[("Runs", "no runs")], badge="measured")
    section.add(html.note("placeholder"))
    page = html.render_section(section.collapse("none recorded", "kura-perf stress"))
    assert page == ('<section id="stress" class="collapsed"><p><b>Stress scenarios:</b> none recorded — run '
                    '<code>kura-perf stress</code></p></section>')
    nasty = html.render_section(html.Section("x", "X").collapse(NASTY, NASTY))
    assert "<script>" not in nasty and ESCAPED in nasty


def test_a_section_names_the_proposal_question_beside_its_plain_title():
    page = html.render_section(html.Section("m", "Storage per conversation", answers="1.3"))
    assert "<h2>Storage per conversation</h2>" in page
    assert "Answers question 1.3 of the load-testing proposal" in page and "load-testing-proposal.md" in page


def test_raw_paragraphs_and_guidance_points_are_placed_as_built():
    assert html.paragraph("<b>x</b>", raw=True) == "<p><b>x</b></p>"
    assert html.bullets(["<b>a</b>", "b"]) == '<ul class="guidance"><li><b>a</b></li><li>b</li></ul>'


def test_the_page_is_one_document_with_the_css_inline_and_user_text_escaped():
    page = html.render_page(NASTY, NASTY, ["<p>intro</p>"], [html.Section("s1", NASTY)], NASTY)
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">") and page.endswith("</html>\n")
    assert "<script>" not in page and f"<title>{ESCAPED}</title>" in page
    assert "<style>\n" + html.CSS + "</style>" in page and html.LEGEND in page
    assert '<nav><a href="#s1">1. ' + ESCAPED + "</a></nav>" in page and "<p>intro</p>" in page
    empty = html.render_empty_page(NASTY, "now")
    assert "<script>" not in empty and f"<code>{ESCAPED}</code>" in empty


def test_the_summary_without_a_headline_points_at_the_failures():
    summary = html.render_summary(NASTY, None, [], 2)
    assert f"<b>Host:</b> {ESCAPED}" in summary and 'href="#breaking"' in summary
    assert "2 record(s) from other hosts" in summary and "<table" not in summary
    alerted = html.render_summary("h", None, [], 0, [NASTY], [("Host", "h"), ("Runs", "3 runs")])
    assert f'<div class="note alert">{ESCAPED}</div>' in alerted and "<b>Runs:</b> 3 runs" in alerted


def test_the_templates_ship_with_the_package():
    root = Path(kura_perf.__file__).parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["kura_perf"]
    assert "report/templates/*" in data
    assert {p.name for p in html.TEMPLATES.iterdir()} >= {"document.html.j2", "page.html.j2", "empty.html.j2",
                                                          "summary.html.j2", "parts.html.j2", "report.css"}
