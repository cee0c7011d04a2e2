"""The performance report: the proposal's tables filled with measured figures, scaling plots, hardware
and cost guidance, built from the metrics store. No Dagster here: the asset and the CLI call
`build_report`.

The report is built in a temporary folder beside its destination and swapped into place at the end,
so a failing build leaves the previous report untouched rather than half-written.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kura_perf.config import Paths

__all__ = ["ReportResult", "build_report"]

INDEX = "index.html"


@dataclass
class ReportResult:
    index_html: Path
    figures: list[Path] = field(default_factory=list)
    headline_markdown: str = ""  # the headline table, for Dagster asset metadata
    main_figure: Path | None = None
    empty: bool = False  # no stage runs recorded
    usability_only: bool = False  # ... but Kura usability measurements are, and the page shows them


def build_report(paths: Paths, out_dir: Path | None = None) -> ReportResult:
    """Build index.html and its PNG figures into out_dir (default paths.reports), replacing any previous report."""
    from kura_perf.report.data import load_report_data

    out_dir = Path(out_dir or paths.reports).resolve()
    _refuse_foreign_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    data = load_report_data(paths.metrics)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-building-", dir=out_dir.parent))
    try:
        result = _render(data, staging)
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _relocate(result, staging, out_dir)


def _render(data, folder: Path) -> ReportResult:
    from kura_perf.report import html
    from kura_perf.report.analysis import analyse
    from kura_perf.report.sections import build_sections
    from kura_perf.report.tables import headline_table

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    index = folder / INDEX
    if data.empty:
        from kura_perf.report.usability import has_usability_rows, usability_sections

        if has_usability_rows(data.metrics_dir):  # checkpoints/onboarding/errors recorded, no stage runs yet
            page = html.render_page("Kura performance report", f"Generated {generated} from {data.metrics_dir}: "
                                    "no stage runs yet, Kura usability measurements only.",
                                    [html.note("No stage runs recorded yet: run `kura-perf run --scale 1k` for "
                                               "the performance sections.")],
                                    usability_sections(data.metrics_dir, None), f"kura_perf report · {generated}")
            index.write_text(page, encoding="utf-8")
            return ReportResult(index, [], "**No stage runs recorded yet**; Kura usability sections only.", None,
                                empty=True, usability_only=True)
        index.write_text(html.render_empty_page(str(data.metrics_dir), generated), encoding="utf-8")
        markdown = ("**No runs recorded yet.** Run `kura-perf run --scale 1k` (or materialize a partition), "
                    "then rebuild the report.")
        return ReportResult(index, [], markdown, None, True)

    analysis = analyse(data)
    built = build_sections(analysis, folder)
    headline = headline_table(analysis)
    host = data.host.describe() if data.host else "unknown host"
    intro = [_summary_html(headline, built.guidance, host, data)]
    subtitle = (f"Generated {generated} from {data.total_records} stage records in {data.metrics_dir}. "
                f"Host: {host}.")
    footer = (f"kura_perf performance report · {generated} · figures as PNG files beside this page · "
              "query the same records with `kura-perf sql`.")
    page = html.render_page("Kura performance report", subtitle, intro, built.sections, footer)
    index.write_text(page, encoding="utf-8")
    markdown = f"Host: {host}\n\n" + headline.to_markdown()
    timelines = [p for p in built.figures if p.name == "timelines.png"]
    main = built.main_figure or (timelines or built.figures or [None])[0]
    if not headline.rows:
        broken = int((data.runs["status"] != "success").sum())
        markdown = (f"Host: {host}\n\n**No successful stage runs yet** ({broken} failed or stopped record(s); "
                    "see the breaking-points section of the report).")
    return ReportResult(index, built.figures, markdown, main, False)


def _summary_html(headline, guidance: list[str], host: str, data) -> str:
    from kura_perf.report.html import esc, render_table

    others = ""
    if data.other_host_records:
        others = (f'<p class="legend">{data.other_host_records} record(s) from other hosts are left out: figures '
                  "from different machines are not comparable.</p>")
    if not headline.rows:
        return (f"<h2 id=\"summary\">Summary</h2><div class=\"prov\"><div><b>Host:</b> {esc(host)}</div></div>{others}"
                '<div class="note">No stage has succeeded yet on this host: every record so far failed or was '
                'stopped. See <a href="#breaking">breaking points and failures</a> for the causes.</div>')
    bullets = "".join(f"<li>{p}</li>" for p in guidance[:3])
    more = '<p class="legend"><a href="#guidance">All scaling guidance ↓</a></p>' if len(guidance) > 3 else ""
    return (f"<h2 id=\"summary\">Summary</h2><div class=\"prov\"><div><b>Host:</b> {esc(host)}</div></div>{others}"
            + render_table(headline, "headline")
            + (f'<ul class="guidance">{bullets}</ul>{more}' if bullets else ""))


REPORT_FILES = (".html", ".png")


def _refuse_foreign_folder(out_dir: Path) -> None:
    """The old report folder is replaced wholesale, so never take over a folder holding anything else."""
    from kura_perf.errors import KuraPerfError

    if out_dir.is_file():
        raise KuraPerfError(f"report destination {out_dir} is a file, not a folder")
    if not out_dir.exists():
        return
    foreign = [p.name for p in out_dir.iterdir() if not (p.is_file() and p.suffix in REPORT_FILES)]
    if foreign:
        raise KuraPerfError(f"refusing to replace {out_dir}: it holds files that are not part of a report "
                            f"({', '.join(sorted(foreign)[:5])}); choose an empty or new folder")


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by staging with renames: the old report stays whole until the new one is complete."""
    retired = out_dir.parent / f".{out_dir.name}-old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        if retired.exists() and not out_dir.exists():
            retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _relocate(result: ReportResult, staging: Path, out_dir: Path) -> ReportResult:
    def moved(p: Path | None) -> Path | None:
        return None if p is None else out_dir / p.relative_to(staging)

    return ReportResult(moved(result.index_html), [moved(p) for p in result.figures], result.headline_markdown,
                        moved(result.main_figure), result.empty, result.usability_only)
