"""`kura-perf publish`: the README's "Measured" section and the published report, from results/ only.

The section between BEGIN and END in README.md is generated, never typed: the records of results/
(results/records.py) go into a scratch metrics store, and the report package builds the same tables
`kura-perf matrix` prints (report.tables.published_matrix) and the 1M projection from fits over measured
scales (report.tables.projection_1m_table), where each profile breaks at 100K and 1M and the largest scale
that fits each of the proposal's machines (report/breaking.py). Contended records (meter/host_load.py) are left out of the
tables and counted. The generation is deterministic (no clock, no paths, files and records in a fixed
order), so a test can hold the committed README to what results/ generates
(kura_perf_tests/test_results.py): a number edited by hand fails the suite.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from kura_perf.errors import KuraPerfError
from kura_perf.files.atomic import atomic_write_text
from kura_perf.meter.host_load import CONTENDED_SHARE
from kura_perf.results.probes import probed_stage_times, probes_lines, read_probes
from kura_perf.results.records import ResultRecord, read_results

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
NOTHING_PUBLISHED = ("No measurement is published yet: `results/` holds no stage records. The previous matrix was "
                     "withdrawn (it was measured at load average 7–9, see above).")


class ReadmeMarkersError(KuraPerfError):
    """The README lacks the generated section's markers (or has them out of order)."""


def repo_readme() -> Path:
    return Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Published:
    section: str  # the Markdown between the markers
    records: int  # records read from results/
    excluded_contended: int
    files: int


def _scratch_store(records: list[ResultRecord], root: Path) -> Path:
    from kura_perf.store.stage_records import write_stage_record

    metrics = root / "metrics"
    for item in records:
        write_stage_record(metrics, item.record)
    return metrics


def _section_from_store(metrics: Path, results: list[ResultRecord], used: list[ResultRecord], excluded: int,
                        results_dir: Path) -> str:
    from kura_perf.report.analysis import analyse
    from kura_perf.report.breaking import breaking_table, tiers_table
    from kura_perf.report.data import load_report_data
    from kura_perf.report.tables import projection_1m_table, published_matrix

    data = load_report_data(metrics)
    analysis = analyse(data)
    profiles = data.profiles()
    scales = sorted({int(r.record.scale_n) for r in used if r.record.scale_n is not None})
    records = [r.record for r in used]
    versions = sorted({r.code_version for r in records if r.code_version})
    days = sorted(f"{r.started_at:%Y-%m-%d}" for r in records if r.started_at)
    python = sorted({_python_of(r.package_versions) for r in records} - {None})
    matrix = published_matrix(analysis, profiles, scales)
    breaking = breaking_table(analysis, profiles, probed=probed_stage_times(results_dir))
    tiers = tiers_table(analysis, profiles)
    lines = [
        f"- Host: {data.host.describe() if data.host else 'unknown'}, {records[0].host_os}"
        + (f", Python {', '.join(python)}" if python else ""),
        f"- Dates (UTC): {days[0]} to {days[-1]}" if days else "- Dates: unknown",
        f"- Code version(s) measured: {', '.join(versions)}",
        f"- From {len(results)} stage records in {len({r.path.name for r in results})} files of `results/`; "
        f"{excluded} excluded as contended (other processes above {CONTENDED_SHARE:.0%} of the box)"
        + (f"; {data.other_host_records} from other hosts not in these tables" if data.other_host_records else ""),
        "",
        matrix.to_markdown(),
        "",
        matrix.caption,
        "",
        "**1M, projected from fits over measured scales only**",
        "",
        projection_1m_table(analysis, profiles).to_markdown(),
        "",
        projection_1m_table(analysis, profiles).caption,
        "",
        "**Breaking points at 100K and 1M: which stage breaks first, on what, and the evidence**",
        "",
        breaking.to_markdown(),
        "",
        breaking.caption,
        "",
        "**The proposal's 4 / 16 / 64 GB machines: the largest scale that fits each**",
        "",
        tiers.to_markdown(),
        "",
        tiers.caption,
        *_versions_lines(metrics),
        *probes_lines(results_dir, _clusters_stage_s(records)),
    ]
    return "\n".join(lines)


def _versions_lines(metrics: Path) -> list[str]:
    """Kura releases side by side (`kura-perf versions`, checks/versions.py), one table per profile and
    scale: each spec's latest run, its ratio to the first spec and the regression checks' verdict. The
    heading says when the times were measured against a sped-up simulator (scaled, never a prediction)."""
    from kura_perf.checks.versions import latest_comparisons
    from kura_perf.report.fmt import scaled_factors, scaled_label
    from kura_perf.report.sections import versions_table

    lines = []
    for profile, scale, frame, specs, records in latest_comparisons(metrics):
        factors = scaled_factors(records)
        lines += ["", f"**Kura versions side by side: {profile} at {scale}** ({' vs '.join(specs)}"
                  + (f"; times {scaled_label(factors)}" if factors else "") + ")", "",
                  versions_table(frame).to_markdown()]
    if lines:
        lines += ["", "Each figure · its ratio to the first spec; the verdict is the regression checks' noise rule for "
                  "time and memory and the exact count for API calls and tokens (`kura-perf versions`)."]
    return lines


def _clusters_stage_s(records) -> dict[tuple[str, int], float]:
    """(profile, conversations) -> median work time of the clusters stage's successful records: what a
    probe's total is checked against where the whole stage was measured."""
    import statistics

    found: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r.stage == "clusters" and r.status == "success" and r.scale_n:
            found.setdefault((r.profile, int(r.scale_n)), []).append(r.stage_work_s or r.wall_s)
    return {key: statistics.median(values) for key, values in found.items()}


def _python_of(package_versions: str | None) -> str | None:
    import json

    try:
        return json.loads(package_versions or "{}").get("python")
    except ValueError:
        return None


def generate(results_dir: Path, report_out: Path | None = None) -> Published:
    """The Markdown of the Measured section from results/ (refusing a record without host or version),
    and, with report_out, the published HTML report built from the same uncontended records."""
    results = read_results(results_dir)
    read_probes(results_dir)  # refused before anything is generated, like a stage record without provenance
    used = [r for r in results if not r.record.contended]
    excluded = len(results) - len(used)
    files = len({r.path.name for r in results})
    if not used:
        text = NOTHING_PUBLISHED if not results else (
            f"No measurement is published: all {len(results)} stage records in `results/` are contended.")
        return Published(text, len(results), excluded, files)
    with tempfile.TemporaryDirectory(prefix="kura-perf-publish-") as tmp:
        metrics = _scratch_store(used, Path(tmp))
        section = _section_from_store(metrics, results, used, excluded, Path(results_dir))
        if report_out is not None:
            from kura_perf.report.build import build_report
            from kura_perf.settings.paths import Paths

            build_report(Paths(root=Path(tmp)), Path(report_out))
    return Published(section, len(results), excluded, files)


def replace_section(readme_text: str, section: str, where: str = "README.md") -> str:
    """readme_text with everything between BEGIN and END replaced by `section`."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeMarkersError(f"{where}: needs the lines {BEGIN} and {END} (in that order) around the generated "
                                 "Measured section")
    return readme_text[:start + len(BEGIN)] + "\n" + section.strip() + "\n" + readme_text[end:]


def current_section(readme_text: str, where: str = "README.md") -> str:
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeMarkersError(f"{where}: no {BEGIN} ... {END} section")
    return readme_text[start + len(BEGIN):end].strip()


def publish(results_dir: Path, readme: Path, report_out: Path | None = None) -> Published:
    """Regenerate the README's section (written only when it changed, atomically) and the report."""
    published = generate(results_dir, report_out)
    text = readme.read_text(encoding="utf-8")
    updated = replace_section(text, published.section, str(readme))
    if updated != text:
        atomic_write_text(readme, updated)
    return published
