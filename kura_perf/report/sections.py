"""The report's sections, each built from the analysis: tables, figures and a provenance box saying
which host, which runs, and whether the figures are measured or extrapolated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kura_perf.checks.versions import latest_comparisons
from kura_perf.datasets import BUILTINS, builtin_name
from kura_perf.profiles import load_profiles
from kura_perf.report import figures, fmt
from kura_perf.report import tables as t
from kura_perf.report.advisor import ADVICE_SCALES, Limits, NothingFits, advise_runs
from kura_perf.report.analysis import Analysis
from kura_perf.report.breaking import breaking_table, tiers_table
from kura_perf.report.data import describe_runs
from kura_perf.report.guidance import guidance
from kura_perf.report.hardware import DISK_FACTOR, ENVIRONMENT_GB, RAM_HEADROOM, TARGET_HOURS, recommend
from kura_perf.report.html import (
    Section,
    bullets,
    heading,
    label,
    note,
    paragraph,
    profile_heading,
    render_figure,
    render_table,
    versus_heading,
)
from kura_perf.report.shapes_advice import advisor_table, shape_cost_table, shape_totals
from kura_perf.report.usability import usability_sections

MEASURED_ONLY = "measured"
WITH_PROJECTIONS = "extrapolated"


@dataclass
class Built:
    sections: list[Section] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    main_figure: Path | None = None
    guidance: list[str] = field(default_factory=list)


class SectionBuilder:
    def __init__(self, analysis: Analysis, figure_dir: Path):
        self.analysis = analysis
        self.data = analysis.data
        self.figure_dir = figure_dir
        self.built = Built()

    # -- helpers -------------------------------------------------------------------------------------
    def _provenance(self, rows: pd.DataFrame, figures_are: str, time_column: str = "started_at") -> list:
        """Which runs and what kind of figures: one line per section. The host is the same for every
        section (the report narrows to one), so it is named once, in the summary's box."""
        return [("Runs", describe_runs(rows, time_column)), ("Figures", figures_are)]

    def _figure(self, section: Section, path: Path | None, alt: str, caption: str = "") -> Path | None:
        if path is None:
            return None
        self.built.figures.append(path)
        section.add(render_figure(path.name, alt, caption))
        return path

    def _with_code_versions(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Rows (per-level quality) with each run's code version from its stage records, where the rows
        do not carry it themselves: the quality view has none, and its provenance must name the code
        like every other section's."""
        if rows.empty or "run_id" not in rows or "code_version" not in self.data.runs:
            return rows
        versions = self.data.runs.dropna(subset=["code_version"]).drop_duplicates("run_id", keep="last")
        known = rows["run_id"].map(dict(zip(versions["run_id"], versions["code_version"])))
        own = rows["code_version"] if "code_version" in rows else pd.Series(None, index=rows.index, dtype=object)
        return rows.assign(code_version=own.where(own.notna(), known))

    def _file(self, name: str) -> Path:
        return self.figure_dir / name

    @staticmethod
    def _slug(text: str) -> str:
        return "".join(c if c.isalnum() else "-" for c in text.lower())

    # -- sections ------------------------------------------------------------------------------------
    def test_matrix(self) -> Section:
        s = Section("matrix", "Time, memory and clusters per scale, per profile", answers="1.2")
        s.provenance = self._provenance(self.data.runs, "measured at the scales run; the proposal's other "
                                                       "scales extrapolated from the fits (shaded)")
        s.badge = WITH_PROJECTIONS if any(p.can_fit for p in self.analysis.profiles.values()) else MEASURED_ONLY
        s.add(paragraph("Peak memory is the largest stage peak RSS; processing time is the sum of the stage "
                        "times (medians over runs). Clusters found are base clusters → top-level meta clusters."))
        measured = {name: pa for name, pa in self.analysis.profiles.items() if pa.scales}
        if not measured:
            return s.collapse("no successful stage runs yet", "kura-perf run --scale 1k")
        contended, total = t.contended_count(self.data.runs)
        if contended:
            s.add(note(f"⚠ {contended} of {total} stage records are contended: the box was busy while they ran "
                       "(other processes above 10% of its CPU, or another run beside them), so their times are "
                       "not a quiet box's. Their rows are marked ⚠; `kura-perf publish` leaves them out."))
        for name, pa in measured.items():
            s.add(profile_heading(name))
            s.add(render_table(t.test_matrix(pa), f"matrix-{self._slug(name)}"))
            s.add(label("Per-stage breakdown"))
            s.add(render_table(t.stage_breakdown(pa), f"breakdown-{self._slug(name)}"))
        return s

    def scaling(self) -> Section:
        s = Section("scaling", "Scaling curves and fitted exponents")
        fitted = [pa for pa in self.analysis.profiles.values() if pa.fits]
        s.provenance = self._provenance(self.data.ok, "measured points; dashed lines and 100K/1M columns "
                                                     "extrapolated from least-squares fits on log values")
        s.badge = WITH_PROJECTIONS if fitted else None
        if not fitted:
            return s.collapse("no successful stage runs yet", "kura-perf run --scale 1k")
        ok = self.data.ok
        if "contended" in ok and ok["contended"].fillna(False).astype(bool).any():
            n = int(ok["contended"].fillna(False).astype(bool).sum())
            s.add(note(f"{n} of {len(ok)} successful stage records are contended (the box was busy while they "
                       "ran, or another run was recording on this host beside them: their timings were "
                       "disturbed); see stage_runs_contended."))
        for pa in fitted:
            s.add(profile_heading(pa.profile))
            slug = self._slug(pa.profile)
            if not pa.can_fit:
                s.add(note(f"Only one scale measured ({fmt.conversations(pa.scales[0])}): a fit needs at least two "
                           "distinct scales, so no exponent, curve or extrapolation is shown."))
            else:
                path = self._figure(s, figures.scaling_figure(pa, self._file(f"scaling-{slug}.png")),
                                    f"scaling curves for {pa.profile}")
                if pa is self.analysis.primary:
                    self.built.main_figure = path
            s.add(render_table(t.fit_table(pa), f"fits-{slug}"))
            if pa is self.analysis.primary:
                self._figure(s, figures.time_share_figure(pa, self._file(f"time-share-{slug}.png")),
                             f"time share per stage for {pa.profile}")
        return s

    def storage(self) -> Section:
        s = Section("storage", "Storage per conversation", answers="1.3")
        rows = self.data.ok[self.data.ok["bytes_written"].notna()]
        s.provenance = self._provenance(rows, "measured per conversation (latest run at the largest scale); "
                                              "10K/100K/1M measured where run there, else projected linearly")
        s.badge = WITH_PROJECTIONS if len(rows) else None
        for pa in self.analysis.profiles.values():
            table = t.storage_table(pa)
            if not table.rows:
                continue
            s.add(profile_heading(pa.profile))
            s.add(render_table(table, f"storage-{self._slug(pa.profile)}"))
            if pa is self.analysis.primary:
                self._figure(s, figures.storage_figure(pa, self._file("storage.png")), "storage per conversation")
        if not s.parts:
            return s.collapse("no stage recorded bytes written yet", "kura-perf run --scale 1k")
        return s

    def timelines(self) -> Section:
        s = Section("timelines", "Memory timelines at the largest scale measured")
        pa = self.analysis.primary
        if pa is None or not pa.scales:
            return s.collapse("no successful runs to draw", "kura-perf run --scale 1k")
        n = max(pa.scales)
        latest = pa.latest_at(n)
        s.provenance = self._provenance(latest, f"measured (profile {pa.profile}, {fmt.conversations(n)} "
                                                "conversations, latest run of each stage)")
        s.badge = MEASURED_ONLY
        s.add(paragraph("Sampled RSS during each stage: a steady ramp means memory held per item (grows with "
                        "scale); a spike means a one-off allocation such as a distance matrix or model load."))
        self._figure(s, figures.timeline_figure(pa, n, self._file("timelines.png")), "memory timelines")
        return s

    def memory_theory(self) -> Section:
        s = Section("memory-theory", "Memory against theory", answers="3.1")
        fitted = [pa for pa in self.analysis.profiles.values() if pa.fits]
        s.provenance = self._provenance(self.data.ok, "measured peak growth beside computed theoretical bytes")
        if not fitted:
            return s.collapse("no successful stage runs yet", "kura-perf run --scale 1k")
        s.badge = MEASURED_ONLY
        s.add(paragraph("The proposal's memory hotspots — the embedding matrix (N × d × 4 bytes), the numpy "
                        "conversion for clustering, HDBSCAN, the meta-clusters' re-embedding and serialization "
                        "buffers — computed per stage from N, d and k, beside each stage's measured growth. Theory "
                        "is what must be resident; Python objects, model weights and library workspaces come on top."))
        for pa in fitted:
            s.add(profile_heading(pa.profile))
            s.add(render_table(t.memory_theory_table(pa), f"theory-{self._slug(pa.profile)}"))
        return s

    def api(self) -> Section:
        s = Section("api", "API throughput, rate limits and cost")
        sweeps = self.data.sweeps
        cost = t.cost_table(self.analysis)
        if sweeps.empty and cost is None:
            return s.collapse("no API calls recorded (the simulator needs no key)",
                              "kura-perf run --scale 1k --profile simulated-openai")
        s.badge = WITH_PROJECTIONS
        api_rows = self.data.ok[self.data.ok["api_calls"].fillna(0) > 0]
        prov = self._provenance(api_rows if len(api_rows) else sweeps, "measured; projected costs are linear")
        if len(sweeps):
            prov.append(("Sweeps", describe_runs(sweeps, "recorded_at")))
        s.provenance = prov
        if len(sweeps):
            s.add(heading("Throughput and 429 share against concurrency"))
            self._figure(s, figures.sweep_figure(sweeps, self._file("api-sweep.png")), "API concurrency sweep")
            s.add(render_table(t.sweep_table(sweeps), "sweeps"))
        if cost is not None:
            s.add(heading("Cost per 1K conversations, per profile"))
            s.add(render_table(cost, "costs"))
        return s

    def backends(self) -> Section:
        s = Section("backends", "Reference vs Kura backend")
        table = t.backend_comparison(self.analysis)
        backends = sorted(self.data.ok["backend"].dropna().unique())
        s.provenance = self._provenance(self.data.ok, "measured")
        if not backends:
            return s.collapse("no successful stage runs yet", "kura-perf run --scale 1k")
        if table is None:
            return s.collapse(f"only the {backends[0]} backend recorded, nothing to compare it with",
                              "kura-perf run --scale 1k --profile kura")
        s.badge = MEASURED_ONLY
        pairs = t.comparison_pairs(self.data.runs)
        if pairs:
            s.add(paragraph("Kura beside the reference at every scale, like with like: each stage's outcome and "
                            "its wall time, peak memory, storage, API calls, cost and quality (base clusters), "
                            "left · right · right ÷ left. A stage that failed on 429s is the measured tier × scale "
                            "outcome of that rate limit, shown as such, not left out."))
        for left, right in pairs:
            s.add(versus_heading(left, right))
            s.add(render_table(t.side_by_side_table(self.data.runs, left, right),
                               f"side-by-side-{self._slug(left)}-{self._slug(right)}"))
        s.add(label("Medians per backend (every profile)"))
        s.add(render_table(table, "backends"))
        return s

    def kura_versions(self) -> Section:
        """Kura releases, checkouts and commits side by side (`kura-perf versions`, checks/versions.py):
        each spec's latest run per partition, ratios to the first spec, the regression checks' verdicts."""
        s = Section("kura-versions", "Kura versions")
        comparisons = latest_comparisons(self.data.metrics_dir)
        if not comparisons:
            return s.collapse("no Kura spec measured yet",
                              "kura-perf versions --scale 1k --profile kura-tier5 kura==0.5.2 kura==0.5.4")
        s.badge = MEASURED_ONLY
        s.provenance = self._provenance(pd.concat([c[4] for c in comparisons]), "measured: each spec's latest run")
        s.add(paragraph("The same partition run with each Kura (a release, a checkout or a commit), each in its own "
                        "environment; every figure's ratio to the first spec, and the verdict of the regression "
                        "checks' noise rule for time and memory (slower / faster / same within noise) and of the "
                        "exact counts for API calls and tokens (more / fewer / same)."))
        for profile, scale, table, specs, records in comparisons:
            factors = fmt.scaled_factors(records)
            s.add(heading(f"{profile} at {scale}: {' vs '.join(specs)}"
                          + (f" (times {fmt.scaled_label(factors)})" if factors else "")))
            s.add(render_table(versions_table(table), f"kura-versions-{self._slug(profile)}-{self._slug(scale)}"))
        return s

    def shapes(self) -> Section:
        s = Section("shapes", "Pipeline shapes: cost per scale", answers="2.2")
        totals = shape_totals(self.data.runs)
        if totals.empty:
            return s.collapse("no complete run of a pipeline shape yet",
                              "kura-perf run --shape minimal|full|custom|streaming --scale 1k")
        rows = self.data.runs[self.data.runs["shape"].notna()] if "shape" in self.data.runs else self.data.runs
        s.provenance = self._provenance(rows, "measured")
        s.badge = MEASURED_ONLY
        s.add(paragraph("minimal = conversations → summaries → clusters (embedding included); full = every stage; "
                        "custom = every stage plus a user step, resumable from per-stage checkpoints; streaming = "
                        "every stage with conversations, summaries and embeddings in batches."))
        s.add(render_table(shape_cost_table(totals), "shapes"))
        return s

    def advisor(self) -> Section:
        s = Section("advisor", "Which profile at which scale (kura-perf advise)")
        host = self.data.host.describe() if self.data.host else "unknown host"
        s.provenance = self._provenance(self.data.runs, "measured at the scale where it was run; projected from "
                                                       "stopped runs; otherwise from the fitted curves")
        s.badge = WITH_PROJECTIONS
        s.add(paragraph("The Pareto front of time, API cost, peak memory and ARI among the recorded full "
                        "pipelines: a profile is dropped when another is no worse on every figure and better on "
                        "one. `kura-perf advise --scale 100k --max-hours H --max-cost USD --max-ram GB --min-ari X` "
                        "adds limits."))
        for n in ADVICE_SCALES:
            try:
                advice = advise_runs(self.data.runs, n, Limits(), host, self.data.metrics_dir)
            except NothingFits as exc:
                if not s.parts[1:]:  # nothing but the introduction: one line
                    return s.collapse(f"no advice: {exc}", "kura-perf run --scale 1k --profile offline")
                s.badge = None
                s.add(note(str(exc)))
                break
            s.add(heading(f"{fmt.conversations(n)} conversations"))
            s.add(render_table(advisor_table(advice), f"advisor-{n}"))
        return s

    def quality(self) -> Section:
        s = Section("quality", "Clustering quality per hierarchy level")
        levels = self.data.levels
        table = t.quality_levels_table(levels)
        if table is None:
            return s.collapse("no per-level quality recorded yet", "kura-perf run --scale 1k")
        s.provenance = self._provenance(self._with_code_versions(levels), "measured against each profile's ground truth at every truth "
                                                "level (the synthetic corpus's topics; CLINC150's domains and "
                                                "intents)", time_column="finished_at")
        s.badge = MEASURED_ONLY
        s.add(paragraph("Level 0 is the base clusters; each meta-cluster round adds a level. Kura's k-means rule "
                        "(k = n/10) makes base clusters finer than the topics on purpose, so judge them by "
                        "homogeneity (each cluster one topic) and judge ARI/NMI at the ★ level. A topic is found "
                        "when the cluster holding most of it is more than half that topic. With several truth "
                        "levels (a profile's truth_levels, coarse to fine), every hierarchy level is scored against "
                        "each, and each has its own ★ level."))
        s.add(render_table(table, "quality-levels"))
        for credit in dataset_credits(levels["profile"].dropna().unique()):
            s.add(note(credit))
        return s

    def breaking_points(self) -> Section:
        s = Section("breaking", "Breaking points and failures")
        broken = self.data.runs[self.data.runs["status"] != "success"]
        s.provenance = self._provenance(broken if len(broken) else self.data.runs, "measured")
        if self.analysis.profiles:
            s.add(paragraph("Where each profile breaks at 100K and 1M (report/breaking.py): the first stage to "
                            "break in pipeline order and on what (a measured stop, memory over the proposal's "
                            "machine for the scale, API waiting by predict's model, or time over the stage's "
                            "bound), with the fits behind it; then the largest scale each of the proposal's 4 / 16 / 64 GB machines "
                            "holds. Beyond the measured scales only fits over ≥3 measured scales are used."))
            s.add(render_table(breaking_table(self.analysis), "breaking-verdicts"))
            s.add(render_table(tiers_table(self.analysis), "breaking-tiers"))
        if broken.empty:
            if self.analysis.profiles:
                s.badge = WITH_PROJECTIONS
                return s
            return s.collapse("none on this host yet (no stage failed or hit a memory/time guard); "
                              "a larger scale finds where it breaks", "kura-perf run --scale 100k")
        s.badge = MEASURED_ONLY
        s.add(paragraph("breaking_point = stopped by a memory or time guard (where the pipeline breaks on this "
                        "machine); failed = any other error. A stopped stage shows how far it got and, when its "
                        "progress is linear in items, its projected total wall time (shaded as projected)."))
        s.add(render_table(t.breaking_points_table(broken), "breaking-points"))
        return s

    def stress(self) -> Section:
        return stress_section(self.data)

    def hardware(self) -> Section:
        s = Section("hardware", "Hardware recommendation matrix", answers="3.2")
        pa = self.analysis.primary
        if pa is None or not pa.scales:
            return s.collapse("no successful runs to derive recommendations from", "kura-perf run --scale 1k")
        rows = recommend(pa)
        self._hardware_rows = rows
        s.provenance = self._provenance(pa.ok, f"derived from profile {pa.profile}: measured where the scale was "
                                               "run, otherwise extrapolated from per-stage fits")
        s.badge = WITH_PROJECTIONS
        s.add(render_table(t.hardware_table(rows), "hardware"))
        s.add(paragraph(f"RAM = process peak RSS × {RAM_HEADROOM} + 1 GB, rounded up to a common size. Cores = "
                        f"enough to finish one run within {TARGET_HOURS:g} h if the CPU-bound work parallelises "
                        "(CPU seconds per stage from the measured CPU/wall ratio), at least 2. Disk = stage "
                        f"outputs × {DISK_FACTOR:g} + {ENVIRONMENT_GB:g} GB for the environment and models. "
                        "The last column is the proposal's guess, for comparison."))
        return s

    def history(self) -> Section:
        s = Section("history", "Regression history")
        partition = t.history_partition(self.analysis)
        if partition is None:
            return s.collapse("no successful runs yet", "kura-perf run --scale 1k")
        profile, n = partition
        hist = t.history_frame(self.analysis, profile, n)
        s.provenance = self._provenance(hist, f"measured (partition {profile} × {fmt.conversations(n)}, the one "
                                              "with the most runs on this host)")
        s.badge = MEASURED_ONLY
        stages = self.data.stages_present(hist)
        self._figure(s, figures.history_figure(hist, stages, f"{profile} × {fmt.conversations(n)}",
                                               self._file("history.png")), "regression history")
        s.add(render_table(t.history_table(self.analysis, hist), "history"))
        checks = t.regression_checks_table(self.data.checks)
        if checks is not None:
            s.add(heading("Failed regression checks"))
            s.add(render_table(checks, "regression-checks"))
        return s

    def guidance(self) -> Section:
        s = Section("guidance", "Scaling guidance", answers="5.2")
        pa = self.analysis.primary
        if pa is None or not pa.scales:
            return s.collapse("no successful runs yet", "kura-perf run --scale 1k")
        rows = getattr(self, "_hardware_rows", None) or recommend(pa)
        broken = self.data.runs[self.data.runs["status"] != "success"]
        s.provenance = self._provenance(pa.ok, f"written from profile {pa.profile}'s measured figures and fits")
        s.badge = WITH_PROJECTIONS if pa.can_fit else MEASURED_ONLY
        paragraphs = guidance(pa, rows, broken, self.data.host.cores if self.data.host else None,
                              self.analysis.quality_collapses())
        self.built.guidance = paragraphs
        s.add(bullets(paragraphs))
        return s

    def build(self) -> Built:
        order = [self.test_matrix, self.scaling, self.storage, self.timelines, self.memory_theory, self.api,
                 self.backends, self.kura_versions, self.quality, self.shapes, self.breaking_points, self.stress, self.hardware,
                 self.advisor, self.history, self.guidance]
        self.built.sections = [make() for make in order]
        self.built.sections += usability_sections(self.data.metrics_dir,
                                                  self.data.host.fingerprint if self.data.host else None)
        return self.built


def stress_section(data) -> Section:
    """The latest run of each stress scenario (also shown on the page of a store with no stage records)."""
    s = Section("stress", "Stress scenarios", answers="4.3")
    stress = data.stress
    if stress is None or stress.empty:
        return s.collapse("none recorded", "kura-perf stress")
    s.provenance = [("Runs", describe_runs(stress)),
                    ("Figures", "measured: the latest run of each scenario, in its own scratch home")]
    s.badge = MEASURED_ONLY
    s.add(paragraph("survived = every pipeline finished and recorded every stage; failed cleanly = a failure "
                    "recorded with a clear error, nothing missing, no orphan temp file; lost data = a record "
                    "missing, a partial output, an orphan temp file, a wrong figure, a bare traceback or a "
                    "failure with nothing recorded. Stress timings are contended by design (faults, concurrent "
                    "pipelines)."))
    s.add(render_table(t.stress_table(stress), "stress"))
    return s


def versions_table(frame: pd.DataFrame) -> t.Table:
    """checks/versions.py's side-by-side frame as a report table: figure · ratio to the first spec."""
    table = t.Table(["Stage", "Kura spec", "Kura", "Wall", "CPU", "Peak RSS", "API calls", "Tokens",
                     "Quality (ARI per level)", "Verdict"])

    def pair(value, ratio, show) -> str:
        if value is None or pd.isna(value):
            return "–"
        return show(value) + ("" if ratio is None or pd.isna(ratio) else f" · ×{ratio:.2f}")

    for r in frame.to_dict("records"):
        worse = any(w in r["verdict"] for w in ("slower", "larger", "calls more", "tokens more"))
        table.add(t.Cell(r["stage"], "head"), r["spec"], r["kura"], pair(r["wall_s"], r["wall_s x"], fmt.seconds),
                  pair(r["cpu_s"], r["cpu_s x"], fmt.seconds), pair(r["peak_mb"], r["peak_mb x"], fmt.megabytes),
                  pair(r["calls"], r["calls x"], lambda v: f"{v:,.0f}"),
                  pair(r["tokens"], r["tokens x"], lambda v: f"{v:,.0f}"), r["quality (ARI per level)"],
                  t.Cell(r["verdict"], "bad" if worse else ""))
    return table


def build_sections(analysis: Analysis, figure_dir: Path) -> Built:
    return SectionBuilder(analysis, figure_dir).build()


def dataset_credits(profiles) -> list[str]:
    """The attribution of each shipped dataset the given (built-in) profiles ran on: CLINC150's CC BY 3.0
    licence asks for it wherever figures derived from it are published."""
    known = load_profiles()
    names = {builtin_name(known[p].data_file) for p in profiles if p in known}
    return [f"Data: {BUILTINS[name].attribution} (kura_perf/datasets/README.md)."
            for name in sorted(n for n in names if n in BUILTINS)]
