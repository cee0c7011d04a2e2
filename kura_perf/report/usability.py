"""Report sections for Kura's usability (issue 13 items 2-3): checkpoint formats, lines of code, time to
a first working pipeline, error clarity. Read from the store tables checkpoint_results,
onboarding_runs and error_clarity (latest run of each, this host's rows when a host is known); the
line counts are computed from examples/ when the report is built."""

from __future__ import annotations

import pandas as pd

from kura_perf.experiments.usability.examples import example_loc
from kura_perf.report import fmt
from kura_perf.report.html import Section, heading, note, paragraph, render_table
from kura_perf.report.tables import Cell, Table
from kura_perf.store import query

_MARK = {True: "yes", False: "no"}


def _latest_run(metrics_dir, table: str, host: str | None, where: str = "TRUE") -> pd.DataFrame:
    host_filter = "AND host_fingerprint = ?" if host else ""
    params = [host] if host else []
    return query(metrics_dir, f"""
        SELECT * FROM {table} WHERE {where} {host_filter} AND run_id = (
            SELECT run_id FROM {table} WHERE {where} {host_filter} ORDER BY recorded_at DESC LIMIT 1)""",
                 params * 2)


def _seconds(value) -> str:
    return fmt.MISSING if fmt.is_missing(value) else f"{value:.2f} s"


def checkpoint_table(rows: pd.DataFrame) -> Table:
    table = Table(["Scale", "Format (Kura class)", "Write", "Reload", "MB on disk", "du MB", "Peak RSS",
                   "Peak growth", "Round trip"],
                  caption="sums over conversations, summaries, clusters and projected clusters; peak = the "
                          "largest kernel high-water mark during one call; growth = above the RSS at its start")
    rows = rows.assign(peak=rows[["write_peak_rss_mb", "read_peak_rss_mb"]].max(axis=1),
                       growth=pd.concat([rows["write_peak_rss_mb"] - rows["write_rss_start_mb"],
                                         rows["read_peak_rss_mb"] - rows["read_rss_start_mb"]], axis=1).max(axis=1))
    for (n, fmt_name), g in rows.groupby(["scale_n", "format"], sort=True):
        bad = g[g["status"] != "success"]
        verdict = (Cell("all kinds reload equal", "good") if bad.empty else
                   Cell("; ".join(f"{k}: {s}" for k, s in zip(bad["kind"], bad["status"])), "bad"))
        table.add(Cell(fmt.conversations(int(n)), "head"), f"{fmt_name} ({g['manager_class'].iloc[0]})",
                  _seconds(g["write_s"].sum(min_count=1)), _seconds(g["read_s"].sum(min_count=1)),
                  fmt.number(g["bytes"].sum(min_count=1) / 1e6, 2),
                  fmt.number(g["dir_du_bytes"].max() / 1e6, 2),
                  fmt.megabytes(g["peak"].max()), fmt.megabytes(g["growth"].max()), verdict)
    return table


def checkpoint_kind_table(rows: pd.DataFrame) -> Table:
    """Per kind, the formats side by side: the fair comparison when a format fails some kinds."""
    formats = sorted(rows["format"].dropna().unique())
    table = Table(["Scale", "Kind", "Items", *[f"{f}: write / reload s, MB" for f in formats]],
                  caption="a failed write leaves nothing to reload; a failed reload means a resumed pipeline "
                          "recomputes the step")
    for (n, kind), g in rows.groupby(["scale_n", "kind"], sort=True):
        cells = []
        for f in formats:
            r = g[g["format"] == f]
            if r.empty:
                cells.append(fmt.MISSING)
                continue
            r = r.iloc[0]
            text = f"{_seconds(r['write_s'])} / {_seconds(r['read_s'])}, {fmt.number(r['bytes'] / 1e6, 2)} MB"
            cells.append(Cell(text) if r["status"] == "success" else Cell(f"{text} ({r['status']})", "bad"))
        table.add(Cell(fmt.conversations(int(n)), "head"), kind, fmt.integer(g["items"].max()), *cells)
    return table


def checkpoint_failures(rows: pd.DataFrame) -> Table | None:
    bad = rows[rows["status"] != "success"].drop_duplicates(["format", "kind", "status"])
    if bad.empty:
        return None
    table = Table(["Format", "Kind", "Status", "What Kura said / what differed"],
                  caption="one row per format and kind that did not round-trip (first scale it happened at)")
    for _, r in bad.sort_values(["format", "kind"]).iterrows():
        table.add(r["format"], r["kind"], Cell(r["status"], "bad"), str(r["error_message"] or "")[:300])
    return table


def loc_table() -> Table:
    table = Table(["Example", "Lines of code", "Lines in file", "What it does"],
                  caption="non-blank, non-comment, non-docstring lines, counted from the files when this report "
                          "was built")
    for e in example_loc():
        table.add(Cell(f"examples/{e.path.name}", "head"), str(e.code_lines), str(e.total_lines), e.description)
    return table


def onboarding_table(rows: pd.DataFrame) -> Table:
    table = Table(["Path", "Status", "venv", "install", "import", "first result", "Total", "Installed", "venv size",
                   "When"], caption="latest attempt of each path")
    for cheap, g in rows.groupby("reused_packages"):
        r = g.sort_values("recorded_at").iloc[-1]
        path = ("cheap (--reuse-packages: install is a no-op)" if cheap
                else f"fresh venv, pip install {r['install_spec']}" + ("" if r["pip_cache"] else " (no pip cache)"))
        status = Cell(r["status"], "good") if r["status"] == "success" else Cell(
            f"failed at {r['failed_step']}: {str(r['error_message'])[:200]}", "bad")
        size = fmt.MISSING if fmt.is_missing(r["venv_bytes"]) else f"{r['venv_bytes'] / 1e6:.0f} MB"
        table.add(Cell(path, "head"), status, _seconds(r["venv_s"]), _seconds(r["install_s"]),
                  _seconds(r["import_s"]), _seconds(r["first_result_s"]), _seconds(r["total_s"]),
                  str(r["installed_kura"] or fmt.MISSING), size, str(r["recorded_at"])[:16])
    return table


def error_table(rows: pd.DataFrame) -> Table:
    table = Table(["Case", "Category", "Outcome", "Error type", "Names subject", "Says expected", "Suggests fix",
                   "Raw traceback", "Score", "Grade", "Kura's message"],
                  caption="score = names + expected + fix + (not raw), 0-4; rules in kura_perf/experiments/usability/"
                          "error_grading.py")
    for _, r in rows.sort_values(["category", "case_id"]).iterrows():
        kind = {"clear": "good", "partial": "", "poor": "bad", "silent": "bad", "hang": "bad"}.get(r["grade"], "")
        message = str(r["error_message"] or "(nothing: the bad input was accepted)").replace("\n", " / ")[:220]
        table.add(Cell(r["case_id"], "head"), r["category"], r["outcome"], str(r["error_type"] or ""),
                  _MARK.get(r["names_subject"], ""), _MARK.get(r["says_expected"], ""),
                  _MARK.get(r["suggests_fix"], ""), _MARK.get(r["raw_traceback"], ""), str(r["score"]),
                  Cell(r["grade"], kind), message)
    return table


def has_usability_rows(metrics_dir) -> bool:
    counts = query(metrics_dir, "SELECT (SELECT count(*) FROM checkpoint_results) + (SELECT count(*) FROM "
                                "onboarding_runs) + (SELECT count(*) FROM error_clarity) AS n")
    return bool(counts["n"].iloc[0])


def usability_sections(metrics_dir, host: str | None) -> list[Section]:
    checkpoints = Section("kura-checkpoints", "Kura's checkpoint formats")
    rows = _latest_run(metrics_dir, "checkpoint_results", host)
    if rows.empty:
        checkpoints.collapse("no checkpoint benchmark recorded yet", "kura-perf checkpoints --scales 100 1k 10k")
    else:
        checkpoints.badge = "measured"
        checkpoints.provenance = [("Run", f"{rows['run_id'].iloc[0][:12]} at {str(rows['recorded_at'].max())[:16]}"),
                                  ("Figures", "measured through Kura's own checkpoint managers, one fresh process "
                                              "per format and scale")]
        checkpoints.add(paragraph("Kura's maintainers call the HF datasets manager much faster; these are the "
                                  "measured figures. A reload that raises or returns nothing is a failure; one "
                                  "whose objects differ from those saved is lossy."))
        checkpoints.add(render_table(checkpoint_table(rows), "checkpoint-formats"))
        checkpoints.add(render_table(checkpoint_kind_table(rows), "checkpoint-kinds"))
        failures = checkpoint_failures(rows)
        if failures is not None:
            checkpoints.add(render_table(failures, "checkpoint-failures"))

    usability = Section("kura-usability", "Kura's usability: lines of code, time to a first pipeline, errors")
    usability.add(heading("Lines of code"))
    try:
        usability.add(render_table(loc_table(), "example-loc"))
    except Exception as exc:  # noqa: BLE001 - an installed package has no examples/ folder
        usability.add(note(str(exc)))  # note() escapes it
    usability.add(heading("Time to a first working pipeline"))
    onboarding = query(metrics_dir, "SELECT * FROM onboarding_runs" + (" WHERE host_fingerprint = ?" if host else ""),
                       [host] if host else [])
    if onboarding.empty:
        usability.add(note("Not measured yet: run `kura-perf onboarding`."))
    else:
        usability.add(render_table(onboarding_table(onboarding), "onboarding"))
    usability.add(heading("Error clarity"))
    errors = _latest_run(metrics_dir, "error_clarity", host)
    if errors.empty:
        usability.add(note("Not measured yet: run `kura-perf error-clarity`."))
    else:
        counts = errors["grade"].value_counts()
        usability.add(paragraph(f"{len(errors)} bad inputs fed to Kura {errors['kura_version'].iloc[0]}: "
                                + ", ".join(f"{counts.get(g, 0)} {g}" for g in
                                            ("clear", "partial", "poor", "silent", "hang"))
                                + f"; mean score {errors['score'].mean():.1f} / 4."))
        usability.add(render_table(error_table(errors), "error-clarity"))
    return [checkpoints, usability]
