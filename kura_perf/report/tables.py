"""The report's tables as plain data (header + cells), so the page and the Dagster metadata share them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from kura_perf.proposal import (
    EXPECTED_CLUSTERS,
    STORAGE_EMBEDDING_DIMENSION,
    STORAGE_KB_PER_CONVERSATION,
    STORAGE_TOTAL_KB_PER_CONVERSATION,
)
from kura_perf.report import fmt
from kura_perf.report.analysis import (
    FIT_TARGETS,
    PROJECTION_SCALES,
    Analysis,
    ProfileAnalysis,
    expected_embedding_kb,
    kb_range,
)
from kura_perf.report.compare import RATE_LIMITED, latest_per_stage, side_by_side, stage_outcome
from kura_perf.report.fits import EXTRAPOLATED, MEASURED, MIN_FIT_SCALES, PROJECTED, UNKNOWN, Estimate
from kura_perf.report.hardware import SINGLE_MACHINE_CORES, HardwareRow, proposal_guess
from kura_perf.report.quality_trend import collapses, quality_points
from kura_perf.report.theory import DEFAULT_TEXT_BYTES, explain, theoretical_bytes, total_bytes
from kura_perf.stages.base import STAGES

PROPOSAL_MATRIX_SCALES = tuple(EXPECTED_CLUSTERS)  # the §1.2 matrix's rows


def expected_clusters_text(n: int) -> str:
    """§1.2's expected clusters at n conversations as the proposal writes them (low–high, 2,000 as 2K), or a dash."""
    if n not in EXPECTED_CLUSTERS:
        return fmt.MISSING
    low, high = EXPECTED_CLUSTERS[n]
    return f"{fmt.conversations(low)}–{fmt.conversations(high)}"


# How a cell that is not measured says so in Markdown (the page shades and marks it, see html.LEGEND).
MARKDOWN_MARKS = {"projected": " *(projected)*", "extrapolated": " *(extrapolated)*",
                  "interpolated": " *(interpolated)*"}


@dataclass
class Cell:
    text: str
    kind: str = ""  # "" | measured | interpolated | projected | extrapolated | unknown | bad | good | head

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""

    def add(self, *cells) -> None:
        self.rows.append([c if isinstance(c, Cell) else Cell(str(c)) for c in cells])

    def to_markdown(self) -> str:
        def esc(text: str) -> str:
            return text.replace("|", "\\|")

        def show(cell: Cell) -> str:
            return esc(cell.text) + MARKDOWN_MARKS.get(cell.kind, "")

        lines = ["| " + " | ".join(esc(h) for h in self.headers) + " |",
                 "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(show(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


def estimate_cell(estimate: Estimate, show) -> Cell:
    if estimate.value is None:
        return Cell(fmt.MISSING, UNKNOWN)
    return Cell(show(estimate.value), estimate.basis)


# -- §1.2 test matrix ------------------------------------------------------------------------------

def _clusters_found(pa: ProfileAnalysis, n: int) -> str:
    rows = pa.ok[(pa.ok["stage"] == "clusters") & (pa.ok["scale_n"] == n)]
    found = rows["n_clusters"].dropna()
    if found.empty:
        return fmt.MISSING
    text = f"{found.median():.0f}"
    noise = rows["noise_share"].dropna()
    if len(noise) and noise.median() > 0:
        text += f" (noise {noise.median():.0%})"
    meta = pa.ok[(pa.ok["stage"] == "meta_clusters") & (pa.ok["scale_n"] == n) & pa.ok["extra"].notna()]
    roots = [json.loads(e).get("roots") for e in meta["extra"]]
    roots = [r for r in roots if r is not None]
    if roots:
        text += f" → {int(pd.Series(roots).median())} top-level"
    return text


def _coverage(pa: ProfileAnalysis, n: int, all_stages: int) -> Cell:
    """'6/6' when complete; otherwise what stopped the run at n: projected, failed, or not run."""
    stages = pa.ok[pa.ok["scale_n"] == n]["stage"].nunique()
    if stages == all_stages:
        return Cell(f"{stages}/{all_stages}")
    projected = pa.projected[pa.projected["scale_n"] == n]
    if len(projected):
        names = ", ".join(projected["stage"])
        return Cell(f"{stages}/{all_stages}; {names} stopped, projected", PROJECTED)
    broken = pa.records[(pa.records["scale_n"] == n) & (pa.records["status"] != "success")]
    if len(broken):
        return Cell(f"{stages}/{all_stages}; {', '.join(broken['stage'].unique())} {broken['status'].iloc[-1]}", "bad")
    return Cell(f"{stages}/{all_stages}", "bad")


def test_matrix(pa: ProfileAnalysis) -> Table:
    """§1.2, filled: measured scales; scales where a stage was stopped, with its projected time; and the
    proposal's other scales extrapolated from fits. Three kinds of cell, each marked (see the legend)."""
    table = Table(["Conversations", "Expected clusters (proposal)", "Clusters found", "Peak memory",
                   "Processing time", "Stages measured"])
    measured = set(pa.scales) | set(pa.projected_scales())
    projectable = PROPOSAL_MATRIX_SCALES if pa.can_fit else ()
    all_stages = len(set(STAGES) | set(pa.fits))
    for n in sorted(measured | set(projectable)):
        peak, wall = pa.pipeline_peak_at(n), pa.pipeline_wall_at(n)
        if n in measured:
            coverage = _coverage(pa, n, all_stages)
            clusters = Cell(_clusters_found(pa, n))
        else:
            coverage, clusters = Cell("fitted, not run", EXTRAPOLATED), Cell("not measured", UNKNOWN)
        coverage = with_contention(coverage, pa.records[pa.records["scale_n"] == n])
        table.add(fmt.conversations(n), expected_clusters_text(n), clusters,
                  estimate_cell(peak, fmt.megabytes), estimate_cell(wall, fmt.seconds), coverage)
    return table


def with_contention(cell, records: pd.DataFrame) -> Cell:
    """The row's last cell, with a ⚠ marker and the count when some of the row's records are contended
    (the box was busy while they ran: their times are not a quiet box's), so the mark sits beside the
    figures it affects."""
    cell = cell if isinstance(cell, Cell) else Cell(str(cell))
    contended, total = contended_count(records)
    if not contended:
        return cell
    return Cell(f"{cell.text} · ⚠ contended {contended}/{total}", "bad")


def headline_table(analysis: Analysis) -> Table:
    """The §1.2 matrix for every profile, measured scales only: the Dagster metadata headline. Quality
    stands beside time and memory (a run that is fast but clusters badly is no answer): the topic-level
    ARI on the finest truth level with its noise share, or the silhouette where there is no truth; a
    collapse against a smaller scale (quality_trend.py) is marked bad."""
    table = Table(["Profile", "Conversations", "Clusters found", "Peak memory", "Processing time",
                   "Quality (ARI · noise)", "Stages"])
    for name, pa in analysis.profiles.items():
        points = quality_points(analysis.data.levels, pa.ok, name)
        collapsed = {c.to_n for c in collapses(name, list(points.values()))}
        for n in pa.scales:
            stages = pa.ok[pa.ok["scale_n"] == n]["stage"].nunique()
            point = points.get(n)
            quality = (Cell(point.text() + (" — collapsed" if n in collapsed else ""), "bad" if n in collapsed
                            else "measured") if point is not None else Cell(fmt.MISSING, UNKNOWN))
            wall = estimate_cell(pa.pipeline_wall_at(n), fmt.seconds)
            scaled = fmt.scaled_factors(pa.ok[pa.ok["scale_n"] == n])
            if scaled and wall.text != fmt.MISSING:  # a sped-up simulator timed it: never shown as a prediction
                wall = Cell(f"{wall.text} ({fmt.scaled_label(scaled)})", wall.kind)
            table.add(name, fmt.conversations(n), _clusters_found(pa, n),
                      estimate_cell(pa.pipeline_peak_at(n), fmt.megabytes), wall, quality,
                      with_contention(f"{stages}/{len(set(STAGES) | set(pa.fits))}",
                                      pa.records[pa.records["scale_n"] == n]))
    return table


def stage_breakdown(pa: ProfileAnalysis) -> Table:
    """Stage x scale: median time, peak RSS and throughput."""
    scales = sorted(set(pa.scales) | set(pa.projected_scales()))
    table = Table(["Stage"] + [fmt.conversations(n) for n in scales],
                  caption="median wall time · peak RSS · items per second, per stage and scale; a stage stopped "
                          "at a limit shows its projected total time")
    for stage in pa.stages():
        cells: list[Cell] = [Cell(stage, "head")]
        for n in scales:
            rows = pa.ok[(pa.ok["stage"] == stage) & (pa.ok["scale_n"] == n)]
            projected = pa.projection_at(stage, n) if rows.empty else None
            if projected is not None:
                cells.append(Cell(f"stopped; {fmt.seconds(projected.value)} projected ({projected.note})", PROJECTED))
                continue
            if rows.empty:
                failed = pa.records[(pa.records["stage"] == stage) & (pa.records["scale_n"] == n)]
                cells.append(Cell("failed" if len(failed) else "not run", "bad" if len(failed) else UNKNOWN))
                continue
            rate = rows["items_per_s"].median()
            rate_text = f"{rate:,.0f}/s" if not fmt.is_missing(rate) else fmt.MISSING
            cells.append(Cell(f"{fmt.seconds_scaled(rows['wall_s'].median(), rows)} · "
                              f"{fmt.megabytes(rows['peak_rss_mb'].median())} · {rate_text}"))
        table.add(*cells)
    return table


# -- scaling fits ----------------------------------------------------------------------------------

def fit_table(pa: ProfileAnalysis) -> Table:
    headers = ["Stage", "Time exponent"] + [f"Time @ {fmt.conversations(n)}" for n in FIT_TARGETS]
    headers += ["Peak RSS exponent", "Growth exponent"] + [f"Peak @ {fmt.conversations(n)}" for n in FIT_TARGETS]
    headers += ["Fitted on"]
    table = Table(headers, caption="exponent b of value ≈ c·nᵇ (least squares on log values); growth = peak − "
                                   "RSS at stage start; peaks projected as start RSS + fitted growth")
    for stage, fit in pa.fits.items():
        exps = [fit.wall, fit.peak, fit.growth]
        based = fit.wall.describe() if fit.wall else f"one scale ({fmt.conversations(fit.largest_n)}): no fit"
        table.add(Cell(stage, "head"), fmt.exponent(exps[0].exponent if exps[0] else None),
                  *[estimate_cell(fit.wall_at(n), fmt.seconds) for n in FIT_TARGETS],
                  fmt.exponent(exps[1].exponent if exps[1] else None),
                  fmt.exponent(exps[2].exponent if exps[2] else None),
                  *[estimate_cell(fit.peak_at(n), fmt.megabytes) for n in FIT_TARGETS], based)
    return table


# -- storage ---------------------------------------------------------------------------------------

def _versus(kb: float, low: float, high: float) -> Cell:
    """Where a measured figure sits against an estimate range: within it, or how far below/above."""
    if low <= kb <= high:
        return Cell("within", "good")
    if kb < low:
        return Cell(f"{kb / low:.2f}× the low end")
    return Cell(f"{kb / high:.1f}× the high end", "bad" if kb > 2 * high else "")


def _storage_at(pa: ProfileAnalysis, stage: str, kb: float, m: int) -> tuple[float, str]:
    """(bytes, kind) of one stage at m conversations, from the data behind it: what the stage wrote there
    when it ran there (measured), else kB per conversation × m (extrapolated linearly). Never by the column's
    position: a measured 10K beside a largest measured 100K is measured too."""
    written = pa.storage_bytes_at(stage, m)
    if written is not None:
        return written, MEASURED
    return kb * 1000 * m, EXTRAPOLATED


def storage_table(pa: ProfileAnalysis) -> Table:
    """kB per conversation per stage (bytes written / conversations) against §1.3; at 10K/100K/1M what was
    written where the stage ran there, else projected linearly."""
    storage = pa.storage_kb_per_conversation()
    dim = pa.embedding_dimension()
    headers = ["Stage", "Measured / conversation", "Measured at", "Proposal's estimate", "vs the estimate"]
    headers += [f"@ {fmt.conversations(n)}" for n in PROJECTION_SCALES]
    table = Table(headers, caption="per conversation: bytes written by the latest run at the largest scale ÷ "
                                   "conversations. @ 10K/100K/1M: bytes written by the latest run at that scale "
                                   "where the stage ran there (measured ⁽ᵐ⁾); elsewhere per conversation × "
                                   "conversations (extrapolated linearly ⁽ᵉ⁾: storage grows with each conversation)")
    totals: dict[int, list[tuple[float, str]]] = {m: [] for m in PROJECTION_SCALES}
    for stage in pa.fits:
        if stage not in storage:
            continue
        kb, n = storage[stage]
        expected = STORAGE_KB_PER_CONVERSATION.get(stage)
        if expected is None:
            estimate, versus = Cell("not in the proposal", UNKNOWN), Cell(fmt.MISSING, UNKNOWN)
        else:
            low, high = expected_embedding_kb(dim) if stage == "embeddings" else expected
            text = kb_range(low, high)
            if stage == "embeddings":
                base = kb_range(*STORAGE_KB_PER_CONVERSATION["embeddings"], exact=False)
                text += (f" ({dim}-d; {base} at {STORAGE_EMBEDDING_DIMENSION}-d)"
                         if dim and dim != STORAGE_EMBEDDING_DIMENSION else f" ({STORAGE_EMBEDDING_DIMENSION}-d)")
            estimate, versus = Cell(text), _versus(kb, low, high)
        at = {m: _storage_at(pa, stage, kb, m) for m in PROJECTION_SCALES}
        for m, figure in at.items():
            totals[m].append(figure)
        table.add(Cell(stage, "head"), fmt.kilobytes(kb), fmt.conversations(n), estimate, versus,
                  *[Cell(fmt.nbytes(b), kind) for b, kind in at.values()])
    if storage:
        total = sum(kb for kb, _ in storage.values())
        # A total is measured at m only when every stage in it was; one projected part makes it projected.
        at_total = [(sum(b for b, _ in totals[m]),
                     MEASURED if all(kind == MEASURED for _, kind in totals[m]) else EXTRAPOLATED)
                    for m in PROJECTION_SCALES]
        table.add(Cell("total", "head"), Cell(fmt.kilobytes(total), "head"), "",
                  Cell(kb_range(*STORAGE_TOTAL_KB_PER_CONVERSATION), "head"),
                  _versus(total, *STORAGE_TOTAL_KB_PER_CONVERSATION),
                  *[Cell(fmt.nbytes(b), kind) for b, kind in at_total])
    return table


# -- API and cost ----------------------------------------------------------------------------------

def cost_table(analysis: Analysis) -> Table | None:
    """Per profile: API calls, 429s and cost per 1K conversations (per run), projected linearly."""
    headers = ["Profile", "Runs", "Largest scale", "API calls / 1K conv.", "429 share", "Cost / 1K conv."]
    headers += [f"Projected cost @ {fmt.conversations(n)}" for n in PROJECTION_SCALES]
    table = Table(headers, caption="medians over each profile's complete runs on this host; cost is linear "
                                   "in conversations, so projections scale the per-1K figure")
    any_api = False
    for name, pa in analysis.profiles.items():
        ok = pa.ok
        if not ((ok["api_calls"].fillna(0) > 0).any() or ok["cost_usd"].notna().any()):
            continue
        any_api = True
        per_run = ok.groupby("run_id").agg(n=("scale_n", "max"), calls=("api_calls", "sum"),
                                           r429=("api_429s", "sum"), cost=("cost_usd", "sum"))
        per_run = per_run[per_run["n"] > 0]
        cost_1k = (per_run["cost"] / per_run["n"] * 1000).median()
        calls_1k = (per_run["calls"] / per_run["n"] * 1000).median()
        share = (per_run["r429"].sum() / per_run["calls"].sum()) if per_run["calls"].sum() else None
        table.add(Cell(name, "head"), str(len(per_run)), fmt.conversations(per_run["n"].max()),
                  f"{calls_1k:,.0f}", fmt.percent(share), fmt.usd(cost_1k),
                  *[Cell(fmt.usd(cost_1k * m / 1000), "extrapolated") for m in PROJECTION_SCALES])
    return table if any_api else None


def sweep_table(sweeps: pd.DataFrame) -> Table | None:
    if sweeps.empty:
        return None
    table = Table(["Profile", "Stage", "Concurrency", "Items / min", "429 share", "p95 latency", "Cost / 1K conv.",
                   "Status"], caption="one row per concurrency level, latest sweep")
    latest = sweeps.sort_values("recorded_at").groupby(["profile", "stage", "concurrency"]).tail(1)
    for _, r in latest.sort_values(["profile", "stage", "concurrency"]).iterrows():
        p95 = r["latency_p95_ms"]
        table.add(r["profile"], r["stage"], fmt.integer(r["concurrency"]), fmt.number(r["items_per_min"], 0),
                  fmt.percent(r["share_429"]), fmt.MISSING if fmt.is_missing(p95) else f"{p95:.0f} ms",
                  fmt.usd(r["cost_per_1k_conversations"]),
                  Cell(str(r["status"]), "" if r["status"] == "success" else "bad"))
    return table


# -- quality per hierarchy level --------------------------------------------------------------------

def quality_levels_table(levels: pd.DataFrame) -> Table | None:
    """One row per profile, scale, truth level and hierarchy level (latest run): for each truth level
    (coarse to fine, e.g. CLINC150's domain then intent) its topic level marked, ARI/NMI for it,
    homogeneity for the finer levels."""
    if levels is None or levels.empty:
        return None
    levels = levels.copy()
    if "truth_level" not in levels:  # rows from before truth levels: one truth, the topic
        levels["truth_level"] = "topic"
    if "truth_rank" not in levels:
        levels["truth_rank"] = 0
    levels["truth_level"] = levels["truth_level"].fillna("topic")
    levels["truth_rank"] = levels["truth_rank"].fillna(0)
    classes = levels["true_classes"] if "true_classes" in levels else levels["true_topics"]
    levels["classes"] = classes.fillna(levels["true_topics"]) if "true_topics" in levels else classes
    table = Table(["Profile", "Conversations", "Truth", "Level", "Clusters", "Noise", "True classes", "ARI", "NMI",
                   "Homogeneity", "Completeness", "Classes found", "Silhouette"],
                  caption="latest run per partition, against each truth level; ★ = the level whose cluster count "
                          "is nearest that truth level's class count (judge ARI/NMI there; homogeneity for finer "
                          "levels)")
    for _, r in levels.sort_values(["profile", "scale_n", "truth_rank", "level"]).iterrows():
        topic = bool(r["is_topic_level"]) if not fmt.is_missing(r["is_topic_level"]) else False
        mark = "good" if topic else ""
        table.add(r["profile"], fmt.conversations(r["scale_n"]) if not fmt.is_missing(r["scale_n"]) else fmt.MISSING,
                  str(r["truth_level"]), Cell(f"{int(r['level'])}{' ★' if topic else ''}", mark),
                  fmt.integer(r["n_clusters"]), fmt.percent(r["noise_share"]), fmt.integer(r["classes"]),
                  _score(r["ari"], topic), _score(r["nmi"], topic), _score(r["homogeneity"]),
                  _score(r["completeness"]), fmt.percent(r["topics_found"]), _score(r["silhouette"]))
    return table


def _score(value, strong: bool = False) -> Cell:
    if fmt.is_missing(value):
        return Cell(fmt.MISSING, UNKNOWN)
    return Cell(f"{float(value):.3f}", "good" if strong else "")


# -- reference vs Kura -----------------------------------------------------------------------------

def backend_comparison(analysis: Analysis) -> Table | None:
    """Per stage and scale, median time / peak / quality of each backend (when more than one ran)."""
    ok = analysis.data.ok
    backends = sorted(ok["backend"].dropna().unique())
    if len(backends) < 2:
        return None
    profiles = {b: ", ".join(sorted(ok[ok["backend"] == b]["profile"].unique())) for b in backends}
    headers = ["Stage", "Conversations"] + [f"{b} ({profiles[b]})" for b in backends]
    headers.append(f"{backends[1]} ÷ {backends[0]} time")
    table = Table(headers, caption="median wall time · peak RSS · ARI (clusters), per backend")
    grouped = ok.groupby(["stage", "scale_n", "backend"]).agg(
        wall=("wall_s", "median"), peak=("peak_rss_mb", "median"), ari=("ari", "median")).reset_index()
    for stage in analysis.data.stages_present(ok):
        for n in sorted(grouped[grouped["stage"] == stage]["scale_n"].unique()):
            sub = grouped[(grouped["stage"] == stage) & (grouped["scale_n"] == n)].set_index("backend")
            cells, walls = [], {}
            for b in backends:
                if b not in sub.index:
                    cells.append(Cell("not run", UNKNOWN))
                    continue
                r = sub.loc[b]
                walls[b] = r["wall"]
                ari = "" if fmt.is_missing(r["ari"]) else f" · ARI {r['ari']:.2f}"
                cells.append(Cell(f"{fmt.seconds(r['wall'])} · {fmt.megabytes(r['peak'])}{ari}"))
            ratio = (walls[backends[1]] / walls[backends[0]]
                     if backends[0] in walls and backends[1] in walls and walls[backends[0]] else None)
            table.add(Cell(stage, "head"), fmt.conversations(n), *cells,
                      fmt.MISSING if ratio is None else f"{ratio:.2f}×")
    return table


# -- breaking points -------------------------------------------------------------------------------

def _projection_cells(r) -> list[Cell]:
    """Items done and projected total wall of a stopped stage (columns from the reliability records)."""
    done, projected = r.get("items_done"), r.get("projected_wall_s")
    total = next((r.get(c) for c in ("items_total", "items_in", "scale_n") if not fmt.is_missing(r.get(c))), None)
    done_text = fmt.MISSING if fmt.is_missing(done) else (
        f"{int(done):,}/{int(total):,}" if not fmt.is_missing(total) else f"{int(done):,}")
    if fmt.is_missing(projected):
        return [Cell(done_text, "" if not fmt.is_missing(done) else UNKNOWN), Cell(fmt.MISSING, UNKNOWN)]
    kind = r.get("projection_kind") or "projected"
    return [Cell(done_text), Cell(f"{fmt.seconds(projected)} ({kind})", PROJECTED)]


def breaking_points_table(runs: pd.DataFrame) -> Table:
    table = Table(["Stage", "Profile", "Scale", "Status", "Cause", "Peak RSS", "Wall", "Items done",
                   "Projected wall", "When"])
    broken = runs[runs["status"] != "success"].sort_values("finished_at", ascending=False)
    for _, r in broken.iterrows():
        cause = f"{r['error_type'] or 'error'}: {r['error_message'] or ''}".strip()
        if len(cause) > 240:
            cause = cause[:237] + "…"
        when = pd.Timestamp(r["finished_at"]).strftime("%Y-%m-%d %H:%M") if not pd.isna(r["finished_at"]) else ""
        table.add(Cell(r["stage"], "head"), r["profile"], fmt.conversations(r["scale_n"]),
                  Cell(r["status"], "bad"), cause, fmt.megabytes(r["peak_rss_mb"]), fmt.seconds(r["wall_s"]),
                  *_projection_cells(r), when)
    return table


# -- stress scenarios ------------------------------------------------------------------------------

OUTCOME_KINDS = {"survived": "good", "failed_cleanly": "", "lost_data": "bad"}


def stress_table(stress: pd.DataFrame) -> Table:
    """The latest run of each stress scenario: what was done, what came out."""
    table = Table(["Scenario", "Outcome", "Fault", "Exit", "Records found / expected", "Orphans",
                   "Partial outputs", "Wrong figures", "Wall", "Peak RSS", "When", "What happened"])
    latest = stress.sort_values("started_at").groupby("scenario", sort=False).tail(1)
    for _, r in latest.sort_values("scenario").iterrows():
        message = str(r["message"] or "")
        if len(message) > 300:
            message = message[:297] + "…"
        when = pd.Timestamp(r["started_at"]).strftime("%Y-%m-%d %H:%M") if not pd.isna(r["started_at"]) else ""
        table.add(Cell(r["scenario"], "head"), Cell(r["outcome"], OUTCOME_KINDS.get(r["outcome"], "")),
                  r["cap_method"] or "", str(r["exit_code"]), f"{r['records_found']} / {r['records_expected']}",
                  str(r["orphans"]), str(r["partial_outputs"]), str(r["wrong_figures"]), fmt.seconds(r["wall_s"]),
                  fmt.megabytes(r["peak_rss_mb"]), when, message)
    return table


# -- hardware --------------------------------------------------------------------------------------

HARDWARE_HEADERS = ["Conversations", "RAM", "Cores", "Disk", "Process peak RSS (during stage)",
                    "Largest stage growth, peak − start RSS (stage)", "Stages' wall summed, this host",
                    "Run wall, first stage start → last stage end (start-up before the first stage not recorded)",
                    "Basis", "Proposal's guess (RAM · CPU · storage)"]


def _growth_cell(r: HardwareRow) -> Cell:
    if r.growth_mb is None:
        return Cell(fmt.MISSING, UNKNOWN)
    return Cell(f"stage growth {fmt.megabytes(r.growth_mb)} ({r.growth_stage})",
                "" if r.growth_basis == MEASURED else r.growth_basis)


def hardware_table(rows: list[HardwareRow]) -> Table:
    """One row per scale. Two memory figures and two times, each named for what it is: the process's peak
    (mostly what was resident before the stage) beside the stage's own growth; the stages' wall summed beside
    the run's wall from its first stage's start to its last stage's end (measured runs only)."""
    table = Table(list(HARDWARE_HEADERS),
                  caption="process peak = the process's peak RSS during the stage where it was highest, "
                          "including what was resident before that stage (interpreter, libraries, models, "
                          "earlier data); stage growth = the largest peak − RSS at the stage's start among the "
                          "stages. Stages' wall summed leaves out the gaps between stages; run wall spans the first "
                          "stage's start to the last stage's end of the complete runs at that scale (median). "
                          "Neither includes the process start-up and model imports before the first stage: no "
                          "record holds it.")
    for r in rows:
        guess = " · ".join(proposal_guess(r.n))
        if r.ram_gb is None:
            table.add(fmt.conversations(r.n), *[Cell(fmt.MISSING, UNKNOWN)] * 7, Cell(r.note, UNKNOWN), guess)
            continue
        kind = "" if r.basis == MEASURED else "extrapolated"
        cores = f"{r.cores}" if r.cores <= SINGLE_MACHINE_CORES else f"{r.cores} (distributed)"
        ram = fmt.gigabytes(r.ram_gb) + (" (distributed)" if r.distributed and "distributed" not in cores else "")
        table.add(Cell(fmt.conversations(r.n), "head"), Cell(ram, kind), Cell(cores, kind),
                  Cell(fmt.gigabytes(r.disk_gb), kind),
                  Cell(f"process peak {fmt.megabytes(r.peak_mb)} (during {r.dominant_memory_stage})", kind),
                  _growth_cell(r), Cell(f"stages' sum {fmt.seconds(r.wall_s_here)}", kind),
                  Cell(f"run wall {fmt.seconds(r.run_span_s)}", MEASURED) if r.run_span_s is not None
                  else Cell("no complete run recorded", UNKNOWN),
                  Cell(r.basis, r.basis), guess)
    return table


# -- regression history ----------------------------------------------------------------------------

def history_partition(analysis: Analysis) -> tuple[str, int] | None:
    """The (profile, scale) with the most runs on this host; ties go to the larger scale."""
    ok = analysis.data.ok
    if ok.empty:
        return None
    counts = ok.groupby(["profile", "scale_n"])["run_id"].nunique().reset_index()
    counts = counts.sort_values(["run_id", "scale_n"], ascending=False)
    top = counts.iloc[0]
    return str(top["profile"]), int(top["scale_n"])


def history_frame(analysis: Analysis, profile: str, n: int) -> pd.DataFrame:
    """One row per run of the partition, chronological: per-stage wall and peak."""
    runs = analysis.data.runs
    rows = runs[(runs["profile"] == profile) & (runs["scale_n"] == n)]
    return rows.sort_values("started_at")


def history_table(analysis: Analysis, history: pd.DataFrame) -> Table:
    stages = analysis.data.stages_present(history)
    table = Table(["Run started", "Code", "Total time"] + stages,
                  caption="per stage: wall time · peak RSS; failed stages marked")
    for _run_id, rows in history.groupby("run_id", sort=False):
        started = pd.Timestamp(rows["started_at"].min()).strftime("%Y-%m-%d %H:%M")
        cells: list[Cell] = []
        for stage in stages:
            r = rows[rows["stage"] == stage]
            if r.empty:
                cells.append(Cell(fmt.MISSING, UNKNOWN))
            elif (r["status"] != "success").all():
                cells.append(Cell(str(r["status"].iloc[-1]), "bad"))
            else:
                r = r[r["status"] == "success"].iloc[-1]
                cells.append(Cell(f"{fmt.seconds(r['wall_s'])} · {fmt.megabytes(r['peak_rss_mb'])}"))
        code = str(rows["code_version"].dropna().iloc[0])[:12] if rows["code_version"].notna().any() else fmt.MISSING
        table.add(started, code, fmt.seconds(rows.loc[rows["status"] == "success", "wall_s"].sum()), *cells)
    return table


def regression_checks_table(checks: pd.DataFrame) -> Table | None:
    """Failed regression checks recorded on this host, newest first."""
    if checks.empty:
        return None
    is_regression = checks["check_name"].fillna("").str.startswith("regression")
    failed = checks[is_regression & ~checks["passed"].fillna(True).astype(bool)]
    if failed.empty:
        return None
    table = Table(["When", "Check", "Stage", "Partition", "Value", "Baseline", "Ratio", "Message"])
    for _, r in failed.sort_values("checked_at", ascending=False).head(30).iterrows():
        table.add(pd.Timestamp(r["checked_at"]).strftime("%Y-%m-%d %H:%M"), r["check_name"], r["stage"],
                  f"{r['profile']}/{r['scale']}", fmt.number(r["value"]), fmt.number(r["baseline"]),
                  fmt.number(r["ratio"]), Cell(str(r["message"] or ""), "bad"))
    return table


# -- memory against theory (§3.1) ------------------------------------------------------------------

def _extra(record) -> dict:
    try:
        return json.loads(record["extra"]) if isinstance(record.get("extra"), str) else {}
    except ValueError:
        return {}


def theory_inputs(pa: ProfileAnalysis, n: int) -> dict:
    """d, k, text bytes per conversation and the clustering method at n, from the records themselves."""
    latest = {r["stage"]: r for r in pa.latest_at(n).to_dict("records")}
    d = pa.embedding_dimension() or 384
    clusters = latest.get("clusters", {})
    k = clusters.get("n_clusters")
    k = 0 if fmt.is_missing(k) else int(k)
    conv = latest.get("conversations")
    text = None
    if conv is not None and _extra(conv).get("raw_text_bytes") and conv.get("items_out"):
        text = _extra(conv)["raw_text_bytes"] / conv["items_out"]
    method = str(_extra(clusters).get("method", "")) if clusters else ""
    return {"d": d, "k": k, "text_bytes": text, "clustering": "kmeans" if "kmeans" in method.lower() else "hdbscan"}


def memory_theory_table(pa: ProfileAnalysis) -> Table:
    """Each stage at the largest scale it completed: measured peak growth beside the §3.1 hotspots."""
    table = Table(["Stage", "Conversations", "Measured growth", "Theory", "Hotspots (theory)", "Measured ÷ theory",
                   "Where they differ and why"],
                  caption="growth = peak RSS − RSS at the stage's start (latest run at the largest scale each stage "
                          "completed); theory = the bytes the stage must hold (kura_perf/report/theory.py), from N, "
                          "d (embedding dimension), k (base clusters) and the text per conversation measured here")
    for stage, fit in pa.fits.items():
        n = fit.largest_n
        rows = pa.latest_at(n)
        rows = rows[rows["stage"] == stage]
        if rows.empty:
            continue
        r = rows.iloc[-1]
        inputs = theory_inputs(pa, n)
        extra = _extra(r)
        batch = extra.get("stream_batch_size")
        k = int(r["items_in"]) if stage == "meta_clusters" and not fmt.is_missing(r["items_in"]) else inputs["k"]
        spots = theoretical_bytes(stage, int(n), inputs["d"], k, text_bytes=inputs["text_bytes"] or DEFAULT_TEXT_BYTES,
                                  batch=batch, clustering=inputs["clustering"])
        theory_mb = total_bytes(spots) / fmt.MIB  # MiB, as growth is recorded
        growth = None
        if not (fmt.is_missing(r["peak_rss_mb"]) or fmt.is_missing(r["rss_start_mb"])):
            growth = max(float(r["peak_rss_mb"]) - float(r["rss_start_mb"]), 0.0)
        ratio = growth / theory_mb if growth is not None and theory_mb > 0 else None
        spots_text = "; ".join(f"{h.name} {fmt.nbytes(h.bytes)} ({h.formula})" for h in spots)
        params = ", ".join([*([f"d={inputs['d']}"] if stage in ("embeddings", "clusters", "meta_clusters", "projections")
                                else []), *([f"k={k}"] if stage in ("clusters", "meta_clusters") else []),
                             *([f"streamed B={batch}"] if batch else [])])
        table.add(Cell(stage, "head"), fmt.conversations(n), fmt.megabytes(growth), fmt.nbytes(total_bytes(spots)),
                  f"{spots_text}" + (f" [{params}]" if params else ""), fmt.MISSING if ratio is None else f"{ratio:.2f}×",
                  explain(stage, growth, theory_mb, streamed=bool(batch)))
    return table


# -- Kura beside the reference, every scale (like with like) ---------------------------------------

# Pairs compared when both sides have records: equal summary/naming models and limits first, then the
# pipelines' defaults (the reference's offline models against Kura's simulated gpt-4o-mini).
LIKE_WITH_LIKE = (("reference:reference-simulated", "kura:kura-tier5"), ("reference:offline", "kura:kura-tier5"),
                  ("reference:offline", "kura:kura"))
SIDE_FIGURES = (("wall_s", "Wall", fmt.seconds), ("peak_rss_mb", "Peak", fmt.megabytes),
                ("bytes_written", "Storage", fmt.nbytes), ("api_calls", "API calls", fmt.integer),
                ("cost_usd", "Cost", fmt.usd), ("ari", "ARI", lambda v: f"{v:.3f}"),
                ("nmi", "NMI", lambda v: f"{v:.3f}"), ("n_clusters", "Clusters", fmt.integer))


def comparison_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    sides = {f"{b}:{p}" for b, p in runs[["backend", "profile"]].drop_duplicates().itertuples(index=False)}
    pairs = [pair for pair in LIKE_WITH_LIKE if set(pair) <= sides]
    if not pairs:
        refs = sorted(s for s in sides if s.startswith("reference:"))
        kuras = sorted(s for s in sides if s.startswith("kura:"))
        if refs and kuras:
            pairs = [(("reference:offline" if "reference:offline" in refs else refs[0]), kuras[0])]
    return pairs


def _outcome_cell(text: str) -> Cell:
    if text == "completed":
        return Cell(text)
    if RATE_LIMITED in text:
        return Cell(f"{text}: measured tier × scale outcome", "bad")
    if "projected" in text:
        return Cell(text, PROJECTED)
    return Cell(text, UNKNOWN if text == "not run" else "bad")


def side_by_side_table(runs: pd.DataFrame, left: str, right: str) -> Table:
    """Per scale, per stage and total: both sides' outcome and figures with the right/left ratio."""
    frame = side_by_side(latest_per_stage(runs), left, right)
    a = frame.attrs
    headers = ["Scale", "Stage", f"{left}", f"{right}"] + [f"{label} (L · R · R/L)" for _, label, _ in SIDE_FIGURES]
    table = Table(headers, caption=f"L = {left}, R = {right}; largest scale completed within the limits: "
                                   f"L {fmt.conversations(a['largest_completed_left'])}, "
                                   f"R {fmt.conversations(a['largest_completed_right'])}. A failed stage is a "
                                   "result: its figures are those it reached before failing.")
    for _, r in frame.iterrows():
        cells = [Cell(fmt.conversations(r["scale_n"]), "head"), Cell(r["stage"], "head" if r["stage"] == "total" else ""),
                 _outcome_cell(r["outcome_left"]), _outcome_cell(r["outcome_right"])]
        for figure, _, show in SIDE_FIGURES:
            def one(v, show=show):
                return fmt.MISSING if fmt.is_missing(v) else show(v)
            ratio = r[f"{figure}_ratio"]
            cells.append(Cell(f"{one(r[f'{figure}_left'])} · {one(r[f'{figure}_right'])} · "
                              f"{fmt.MISSING if fmt.is_missing(ratio) else f'{ratio:.2f}×'}"))
        table.add(*cells)
    return table


# -- the published matrix (README "Measured", `kura-perf matrix`) ----------------------------------

def _partition_outcome(pa: ProfileAnalysis, n: int) -> Cell:
    """completed | projected (stopped stage named) | failed (stage and cause) | not run."""
    at = pa.records[pa.records["scale_n"] == n]
    if at.empty:
        return Cell("not run", UNKNOWN)
    latest = at.sort_values("finished_at").groupby("stage").tail(1)
    broken = latest[latest["status"] != "success"]
    if broken.empty:
        done = set(latest["stage"])
        return Cell("completed") if done >= set(STAGES) else Cell(f"partial ({len(done)}/{len(STAGES)} stages)", "bad")
    projected = pa.projected[pa.projected["scale_n"] == n]
    if len(projected):
        return Cell("projected: " + ", ".join(f"{r['stage']} stopped at {fmt.seconds(r['wall_s'])}"
                                              for _, r in projected.iterrows()), PROJECTED)
    causes = [f"{r['stage']} {stage_outcome(r)}" for _, r in broken.iterrows()]
    return Cell("failed: " + "; ".join(causes), "bad")


def _cost_per_1k(pa: ProfileAnalysis, n: int) -> str:
    at = pa.records[pa.records["scale_n"] == n]
    if at.empty or "cost_usd" not in at or at["cost_usd"].isna().all():
        # "$0" only for a profile that never called an API at any scale: a stage of an API profile
        # that was stopped before it could report its traffic (an interrupted Kura call) cost something.
        never_called = (pa.records["api_calls"].fillna(0) == 0).all()
        return "$0 (no API)" if not at.empty and never_called else fmt.MISSING
    latest = at.sort_values("finished_at").groupby("stage").tail(1)
    return fmt.usd(latest["cost_usd"].fillna(0).sum() / n * 1000)


def published_matrix(analysis: Analysis, profiles: list[str] | None = None,
                     scales: list[int] | None = None) -> Table:
    """The proposal's §1.2 matrix for each profile (backend) at each scale: clusters, peak memory,
    processing time, cost per 1K conversations, and whether the partition completed, was projected
    from a stopped stage, or failed. What `kura-perf matrix` prints and the README's Measured section holds."""
    table = Table(["Backend (profile)", "Conversations", "Expected clusters (proposal)", "Clusters found", "Peak memory",
                   "Processing time", "Cost / 1K conv.", "Outcome"],
                  caption="peak = largest stage peak RSS; time = sum of stage wall times; plain = measured, "
                          "(projected) = from a stage stopped at its limit, (extrapolated) = fitted across scales")
    names = profiles or list(analysis.profiles)
    for name in names:
        pa = analysis.profiles.get(name)
        if pa is None:
            runs = analysis.data.runs
            pa = ProfileAnalysis(name, runs[runs["profile"] == name], {})
        backend = pa.backend
        wanted = scales or sorted(set(pa.scales) | set(pa.projected_scales()))
        for n in wanted:
            measured = n in pa.scales
            wall, peak = pa.pipeline_wall_at(n), pa.pipeline_peak_at(n)
            outcome = _partition_outcome(pa, n)
            contended, total = contended_count(pa.records[pa.records["scale_n"] == n])
            if contended:
                outcome = Cell(f"{outcome.text}; ⚠ contended: {contended} of {total} stage records", "bad")
            table.add(Cell(f"{backend} ({name})", "head"), fmt.conversations(n), expected_clusters_text(n),
                      Cell(_clusters_found(pa, n)) if measured else Cell("not measured", UNKNOWN),
                      estimate_cell(peak, fmt.megabytes), estimate_cell(wall, fmt.seconds), _cost_per_1k(pa, n),
                      outcome)
    shown = pd.concat([analysis.profiles[p].records for p in names if p in analysis.profiles] or [pd.DataFrame()])
    contended, total = contended_count(shown)
    if contended:
        table.caption += (f"; ⚠ contended: {contended} of {total} stage records ran on a busy box (other processes "
                          "above 10% of its CPU, or another run beside them): their times are not a quiet box's")
    return table


def contended_count(records: pd.DataFrame) -> tuple[int, int]:
    """(contended records, records): `contended` is the store view's (the box busy while the stage ran, or
    another run beside it; meter/host_load.py, store/views.py). Records of older stores without the
    column count as not contended."""
    if records is None or records.empty or "contended" not in records:
        return 0, 0 if records is None else len(records)
    return int(records["contended"].fillna(False).astype(bool).sum()), len(records)


# -- 1M, projected honestly (issue 19 item 5) ------------------------------------------------------

MIN_SCALES_FOR_1M = MIN_FIT_SCALES  # report/fits.py: R² says nothing with two points


def projection_1m_table(analysis: Analysis, profiles: list[str] | None = None, target: int = 1_000_000) -> Table:
    """Each stage's work time and peak memory at `target` conversations from power laws fitted over its
    MEASURED scales only (successful records: never a projected or extrapolated cell), each fit's exponent
    and R² beside it; the time is StageFit.wall_at's, which takes a steeper tail over the global fit (small
    scales hide a super-linear CPU term: report/fits.py) and the cell names the tail that won; a stage with fewer than MIN_SCALES_FOR_1M measured scales gets no projection and
    says why. The pipeline row sums the stages' times (largest stage peak) only when every stage has one."""
    label = fmt.conversations(target)
    table = Table(["Backend (profile)", "Stage", "Measured scales", "Time exponent", "Time R²", f"Time @ {label}",
                   "Growth exponent", "Growth R²", f"Peak @ {label}"],
                  caption=f"{label} cells are projected: value ≈ c·nᵇ by least squares on log values over the "
                          f"measured scales only (at least {MIN_SCALES_FOR_1M}); time = stage work time, the larger of "
                          "that fit and the tails (work time, and CPU at the largest scale's parallelism, extended "
                          "along their slope between the two largest scales; the cell names a tail that won); peak = "
                          "RSS at the stage's start + fitted growth. Never fitted through a projected cell.")
    names = profiles or list(analysis.profiles)
    for name in names:
        pa = analysis.profiles.get(name)
        if pa is None or not pa.fits:
            continue
        backend = pa.backend
        head = Cell(f"{backend} ({name})", "head")
        times, peaks, complete = [], [], True
        for stage, fit in pa.fits.items():
            scales = sorted(int(n) for n in fit.measured["scale_n"])
            shown = ", ".join(fmt.conversations(n) for n in scales)
            if len(scales) < MIN_SCALES_FOR_1M or fit.wall is None:
                complete = False
                table.add(head, Cell(stage, "head"), shown, fmt.MISSING, fmt.MISSING,
                          Cell(f"needs ≥{MIN_SCALES_FOR_1M} measured scales (has {len(scales)})", UNKNOWN),
                          fmt.MISSING, fmt.MISSING, Cell(fmt.MISSING, UNKNOWN))
                continue
            estimate = fit.wall_at(target)  # the global fit, or a steeper tail (report/fits.py)
            wall = estimate.value
            peak = fit.peak_model(target)
            times.append(wall)
            peaks.append(peak)
            table.add(head, Cell(stage, "head"), shown, fmt.exponent(fit.wall.exponent), _r2(fit.wall.r2),
                      Cell(fmt.seconds(wall) + (f" by {estimate.method}" if estimate.method else ""), PROJECTED),
                      fmt.exponent(fit.growth.exponent if fit.growth else None),
                      _r2(fit.growth.r2 if fit.growth else None),
                      Cell(fmt.megabytes(peak), PROJECTED) if peak is not None else Cell(fmt.MISSING, UNKNOWN))
        if complete and times:
            table.add(head, Cell("pipeline", "head"), "", "", "", Cell(fmt.seconds(sum(times)), PROJECTED), "", "",
                      Cell(fmt.megabytes(max(p for p in peaks if p is not None)), PROJECTED)
                      if any(p is not None for p in peaks) else Cell(fmt.MISSING, UNKNOWN))
    return table


def _r2(value) -> str:
    return fmt.MISSING if value is None else f"{value:.3f}"
