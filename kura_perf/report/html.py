"""The page: self-contained HTML with inline CSS (no CDN, no JavaScript), images as PNG files beside it."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from kura_perf.report.tables import Cell, Table

CSS = """
:root { --ink:#1d2330; --muted:#5b6473; --line:#dde1e7; --bg:#f6f7f9; --accent:#2457a6;
        --extra:#8a5a00; --extra-bg:#fff6e0; --bad:#a4001d; --bad-bg:#fdecef; --good:#1d6b2f; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:24px 28px 60px; background:#fff; min-height:100vh; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:20px; margin:38px 0 6px; padding-top:10px; border-top:2px solid var(--line); }
h3 { font-size:16px; margin:22px 0 6px; }
p { margin:8px 0; }
code { background:#eef1f5; padding:1px 5px; border-radius:3px; font-size:13px; }
.sub { color:var(--muted); margin:0 0 14px; }
.prov { font-size:12.5px; color:var(--muted); background:var(--bg); border-left:3px solid var(--line);
        padding:6px 10px; margin:6px 0 12px; }
.prov b { color:var(--ink); font-weight:600; }
nav { columns:3; column-gap:24px; font-size:14px; background:var(--bg); padding:10px 16px; border-radius:6px;
      margin:16px 0; }
nav a { display:block; color:var(--accent); text-decoration:none; padding:1px 0; }
.scroll { overflow-x:auto; margin:8px 0 4px; }
table { border-collapse:collapse; font-size:13.5px; min-width:50%; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#eef1f5; font-weight:600; white-space:nowrap; }
tr:nth-child(even) td { background:#fafbfc; }
td.head { font-weight:600; white-space:nowrap; }
td.extrapolated, td.interpolated { color:var(--extra); background:var(--extra-bg) !important; font-style:italic; }
td.extrapolated::after { content:" ⁽ᵉ⁾"; font-style:normal; }
td.interpolated::after { content:" ⁽ⁱ⁾"; font-style:normal; }
td.projected { color:#4b2e83; background:#efe9fa !important; }
td.projected::after { content:" ⁽ᵖ⁾"; }
td.unknown { color:var(--muted); }
td.bad { color:var(--bad); background:var(--bad-bg) !important; }
td.good { color:var(--good); }
.caption { font-size:12.5px; color:var(--muted); margin:2px 0 10px; }
figure { margin:12px 0 18px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { font-size:12.5px; color:var(--muted); }
.badge { display:inline-block; font-size:11.5px; font-weight:600; padding:1px 7px; border-radius:10px;
         vertical-align:middle; margin-left:6px; }
.badge.measured { background:#e3f1e6; color:var(--good); }
.badge.extrapolated { background:var(--extra-bg); color:var(--extra); }
.legend { font-size:12.5px; color:var(--muted); }
.note { background:#f0f5ff; border:1px solid #cfdcf5; border-radius:6px; padding:10px 14px; margin:10px 0; }
.empty { text-align:center; padding:60px 20px; }
.empty h1 { font-size:28px; }
.empty pre { display:inline-block; text-align:left; background:#1d2330; color:#f4f6fa; padding:14px 20px;
             border-radius:6px; font-size:14px; }
ul.guidance li { margin:6px 0; }
footer { margin-top:40px; font-size:12px; color:var(--muted); border-top:1px solid var(--line); padding-top:10px; }
"""

LEGEND = ('<p class="legend">Three kinds of figure, never mixed up: plain cells are <b>measured</b> on the host '
          'named in each section; cells shaded <span style="background:#efe9fa;color:#4b2e83">like this ⁽ᵖ⁾</span> '
          'are <b>projected</b> from a stage that was stopped at a time or memory limit (its own items done and '
          'elapsed time; the kind of projection is named, e.g. linear-in-items); cells shaded '
          '<span style="background:#fff6e0;color:#8a5a00;font-style:italic">like this ⁽ᵉ⁾</span> are '
          '<b>extrapolated</b> (⁽ⁱ⁾ interpolated) from power laws fitted across the scales measured.</p>')


@dataclass
class Section:
    anchor: str
    title: str
    provenance: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    parts: list[str] = field(default_factory=list)  # HTML fragments
    badge: str | None = None  # measured | extrapolated

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def render_cell(cell: Cell) -> str:
    cls = f' class="{esc(cell.kind)}"' if cell.kind else ""
    return f"<td{cls}>{esc(cell.text)}</td>"


def render_table(table: Table, table_id: str | None = None) -> str:
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(render_cell(c) for c in row) + "</tr>" for row in table.rows)
    caption = f'<p class="caption">{esc(table.caption)}</p>' if table.caption else ""
    return (f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            + caption)


def render_figure(filename: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{esc(filename)}" alt="{esc(alt)}" loading="lazy">{cap}</figure>'


def paragraph(text: str, raw: bool = False) -> str:
    return f"<p>{text if raw else esc(text)}</p>"


def note(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


def render_section(section: Section) -> str:
    badge = f'<span class="badge {esc(section.badge)}">{esc(section.badge)}</span>' if section.badge else ""
    prov = "".join(f"<div><b>{esc(label)}:</b> {esc(text)}</div>" for label, text in section.provenance)
    prov_html = f'<div class="prov">{prov}</div>' if prov else ""
    return (f'<section id="{esc(section.anchor)}"><h2>{esc(section.title)}{badge}</h2>{prov_html}'
            + "".join(section.parts) + "</section>")


def render_page(title: str, subtitle: str, intro: list[str], sections: list[Section], footer: str) -> str:
    nav = "".join(f'<a href="#{esc(s.anchor)}">{i}. {esc(s.title)}</a>' for i, s in enumerate(sections, 1))
    body = "".join(intro) + f"<nav>{nav}</nav>" + LEGEND + "".join(render_section(s) for s in sections)
    return _document(title, f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>{body}"
                            f"<footer>{esc(footer)}</footer>")


def render_empty_page(metrics_dir: str, generated: str, extra_sections: list[Section] | None = None) -> str:
    """The page for a store without stage records; extra_sections (e.g. stress results) still show."""
    extra = "".join(render_section(s) for s in extra_sections or [])
    body = (
        '<div class="empty"><h1>No runs recorded yet</h1>'
        f"<p>The metrics store at <code>{esc(metrics_dir)}</code> holds no stage records, so there is nothing "
        "to report.</p><p>Record a first benchmark run, then rebuild this report:</p>"
        "<pre>kura-perf run --scale 1k\nkura-perf report</pre>"
        "<p>Add a second scale (e.g. <code>--scale 100</code>, <code>--scale 10k</code>) to get scaling curves, "
        "fitted exponents and hardware projections; in Dagster, materialize a few partitions of the stage "
        "assets and the report refreshes itself.</p></div>"
        f"{extra}<footer>Generated {esc(generated)}.</footer>")
    return _document("Kura performance report: no runs recorded yet", body)


def _document(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
