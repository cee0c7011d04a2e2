"""Build the performance report: the proposal's tables filled with measured figures, scaling plots,
hardware and cost guidance, from the metrics store. No Dagster here: the asset and the CLI call
`build_report`.

The report is built in a temporary folder inside its destination; only when it is complete are its
files renamed into place (figures first, index.html last), so a failing build leaves the previous report
untouched rather than half-written. The destination may be any folder (`report --out DIR`): a manifest
(.kura-perf-report.json) lists the files the report wrote, and only those are ever replaced or removed;
the user's own files and the folder's mode are left alone. The destination is checked first
(report/destination.py): a folder holding an index.html kura-perf did not write is refused before a
record is read; a figure name that collides with a user's file is refused once the figures are known.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape as html_escape
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text, publish
from kura_perf.report import html
from kura_perf.report.analysis import analyse
from kura_perf.report.data import describe_runs, load_report_data
from kura_perf.report.destination import INDEX, MANIFEST, check_destination, refuse_to_overwrite_foreign
from kura_perf.report.scale_out import scale_out_section
from kura_perf.report.sections import build_sections, stress_section
from kura_perf.report.tables import headline_table
from kura_perf.report.usability import has_usability_rows, usability_sections
from kura_perf.settings.paths import Paths

__all__ = ["ReportResult", "build_report"]


@dataclass
class ReportResult:
    index_html: Path
    figures: list[Path] = field(default_factory=list)
    headline_markdown: str = ""  # the headline table, for Dagster asset metadata
    main_figure: Path | None = None
    empty: bool = False  # no stage runs recorded
    usability_only: bool = False  # ... but Kura usability measurements are, and the page shows them


def build_report(paths: Paths, out_dir: Path | None = None) -> ReportResult:
    """Build index.html and its PNG figures into out_dir (default paths.reports), replacing the files
    of any previous report there and nothing else."""
    default = out_dir is None
    out_dir = Path(out_dir or paths.reports).resolve()
    owned = check_destination(out_dir, default)  # before a record is read: a refusal costs nothing
    data = load_report_data(paths.metrics)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)  # a new folder gets the usual umask; an existing one keeps its mode
    staging = Path(tempfile.mkdtemp(prefix=".kura-perf-report-building-", dir=out_dir))
    try:
        result = _render(data, staging)
        written = sorted(p.name for p in staging.iterdir())
        refuse_to_overwrite_foreign(out_dir, written, owned)  # the figures: named only now
        _write_manifest(out_dir, sorted(owned | set(written)))  # a crash while moving still knows both sets
        for name in sorted(written, key=lambda n: n == INDEX):  # index.html last: it names the figures
            publish(staging / name, out_dir / name, durable=False)  # a report can be rebuilt
        for stale in owned - set(written):
            (out_dir / stale).unlink(missing_ok=True)
        _write_manifest(out_dir, written)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            try:
                out_dir.rmdir()  # only if still empty: never a folder with anything in it
            except OSError:
                pass
        raise
    staging.rmdir()
    return _relocate(result, staging, out_dir)


def _write_manifest(out_dir: Path, names: list[str]) -> None:
    atomic_write_text(out_dir / MANIFEST, json.dumps({"files": names}, indent=1))


def _render(data, folder: Path) -> ReportResult:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    index = folder / INDEX
    if data.empty:
        # stress scenarios record no stage runs in this store: show them anyway (one line when none)
        extra = [stress_section(data)]
        if has_usability_rows(data.metrics_dir):  # checkpoints/onboarding/errors recorded, no stage runs yet
            page = html.render_page("Kura performance report", f"Generated {generated} from {data.metrics_dir}: "
                                    "no stage runs yet, Kura usability measurements only.",
                                    [html.note("No stage runs recorded yet: run `kura-perf run --scale 1k` for "
                                               "the performance sections.")],
                                    usability_sections(data.metrics_dir, None) + extra,
                                    f"kura_perf report · {generated}")
            index.write_text(page, encoding="utf-8")
            return ReportResult(index, [], "**No stage runs recorded yet**; Kura usability sections only.", None,
                                empty=True, usability_only=True)
        index.write_text(html.render_empty_page(str(data.metrics_dir), generated, extra), encoding="utf-8")
        markdown = ("**No runs recorded yet.** Run `kura-perf run --scale 1k` (or materialize a partition), "
                    "then rebuild the report.")
        return ReportResult(index, [], markdown, None, True)

    analysis = analyse(data)
    built = build_sections(analysis, folder)
    if (scale_out := scale_out_section(data.metrics_dir)) is not None:  # cluster runs only
        built.sections.append(scale_out)
    headline = headline_table(analysis)
    host = data.host.describe() if data.host else "unknown host"
    provenance = [("Host", host), ("Runs", describe_runs(data.runs)),
                  ("Figures", "measured on this host unless a cell is shaded as projected or extrapolated "
                              "(see the legend); each section names the runs it draws on")]
    alerts = [c.sentence() for c in analysis.quality_collapses()]
    said = {f"<b>{html_escape(a)}</b>" for a in alerts}  # the alert above the table says it already
    intro = [html.render_summary(host, headline if headline.rows else None, [g for g in built.guidance if g not in said],
                                 data.other_host_records, alerts, provenance)]
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


def _relocate(result: ReportResult, staging: Path, out_dir: Path) -> ReportResult:
    def moved(p: Path | None) -> Path | None:
        return None if p is None else out_dir / p.relative_to(staging)

    return ReportResult(moved(result.index_html), [moved(p) for p in result.figures], result.headline_markdown,
                        moved(result.main_figure), result.empty, result.usability_only)
