"""The page: self-contained HTML with inline CSS (no CDN, no JavaScript), images as PNG files beside it.

The markup lives in Jinja2 templates (kura_perf/report/templates/: document, page, empty page, summary,
and the parts: table, figure, headings, paragraph, note, section, legend); this module renders them and
the sections (sections.py, usability.py, scale_out.py) put the parts together. Autoescape is on, so any
text placed in the page is escaped unless it is HTML the report built itself (a section's parts, the
summary, guidance points with their bold stage names), which the templates mark |safe. Values are escaped with the standard library's html.escape,
as the page always has been (quotes included, e.g. &#x27;), so the bytes of the page did not change
with the move to templates.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from kura_perf.report.tables import Cell, Table

TEMPLATES = Path(__file__).parent / "templates"


def _escaped(value) -> Markup:
    """Every printed value: HTML the report built (Markup, or a macro's output) as it is, anything else escaped."""
    return value if hasattr(value, "__html__") else Markup(html.escape(str(value), quote=True))


_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, finalize=_escaped,
                   keep_trailing_newline=True, undefined=StrictUndefined)
_PARTS = _ENV.get_template("parts.html.j2").module

CSS = (TEMPLATES / "report.css").read_text(encoding="utf-8")
LEGEND = str(_PARTS.legend())


PROPOSAL = Path(__file__).resolve().parents[2] / "docs" / "load-testing-proposal.md"


def proposal_href() -> str | None:
    """A link to the proposal a section answers, when this checkout has it (a file: URL, nothing fetched)."""
    return PROPOSAL.as_uri() if PROPOSAL.is_file() else None


@dataclass
class Section:
    """A section of the report. Its title is plain words (what it shows); `answers` names the proposal
    question it answers ("1.2"), shown beside the title as a link, never in it: a reader of the report
    does not know the proposal. `provenance` is one small line (which runs, what kind of figures): the
    host is named once, at the top. A section with nothing to show collapses to one line (`collapse`)
    that names the command that fills it, instead of a heading over a placeholder."""
    anchor: str
    title: str
    provenance: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    parts: list[str] = field(default_factory=list)  # HTML fragments
    badge: str | None = None  # measured | extrapolated
    answers: str | None = None  # the proposal question it answers, e.g. "1.2"
    empty: Markup | None = None  # the one line shown instead of the section, when nothing is recorded

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def collapse(self, what: str, command: str | None) -> Section:
        """Show only '<title>: <what> — run `<command>`' (command None: nothing to run, e.g. no failures)."""
        text = html.escape(what, quote=True)
        if command:
            text += f" — run <code>{html.escape(command, quote=True)}</code>"
        self.empty, self.parts, self.provenance, self.badge = Markup(text), [], [], None
        return self


def render_cell(cell: Cell) -> str:
    return str(_PARTS.cell(cell))


def render_table(table: Table, table_id: str | None = None) -> str:
    return str(_PARTS.table(table, table_id))


def render_figure(filename: str, alt: str, caption: str = "") -> str:
    return str(_PARTS.figure(filename, alt, caption))


def paragraph(text: str, raw: bool = False) -> str:
    """raw=True: `text` is HTML the caller built (its own values escaped), placed as it is."""
    return str(_PARTS.paragraph(Markup(text) if raw else text))


def note(text: str) -> str:
    return str(_PARTS.note(text))


def heading(text: str) -> str:
    return str(_PARTS.heading(text))


def profile_heading(name: str) -> str:
    return str(_PARTS.profile_heading(name))


def versus_heading(left: str, right: str) -> str:
    return str(_PARTS.versus_heading(left, right))


def label(text: str) -> str:
    """A table's bold label inside a section."""
    return str(_PARTS.label(text))


def bullets(items: list[str]) -> str:
    """A list of guidance points; each item is HTML the guidance built."""
    return str(_PARTS.bullets(items))


def render_summary(host: str, headline: Table | None, guidance: list[str], other_host_records: int,
                   alerts: list[str] | None = None, provenance: list[tuple[str, str]] | None = None) -> str:
    """The summary above the contents; headline None when nothing has succeeded on this host yet.
    alerts: plain sentences shown above the table (a quality collapse); provenance: the page's one
    Host/Runs/Figures box (host alone when not given)."""
    return _ENV.get_template("summary.html.j2").render(host=host, headline=headline, guidance=guidance,
                                                      other_host_records=other_host_records, alerts=alerts or [],
                                                      provenance=provenance or [("Host", host)])


def render_section(section: Section) -> str:
    return str(_PARTS.section(section, proposal_href()))


def render_page(title: str, subtitle: str, intro: list[str], sections: list[Section], footer: str) -> str:
    """intro: HTML fragments (the summary) placed as they are before the contents."""
    return _ENV.get_template("page.html.j2").render(title=title, subtitle=subtitle, intro=intro, sections=sections,
                                                   footer=footer, css=CSS, proposal=proposal_href())


def render_empty_page(metrics_dir: str, generated: str, extra_sections: list[Section] | None = None) -> str:
    """The page for a store without stage records; extra_sections (e.g. stress results) still show."""
    return _ENV.get_template("empty.html.j2").render(title="Kura performance report: no runs recorded yet",
                                                    metrics_dir=metrics_dir, generated=generated,
                                                    extra_sections=extra_sections or [], css=CSS,
                                                    proposal=proposal_href())
