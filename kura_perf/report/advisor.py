"""Which profile to run at a given scale: the Pareto front of time, cost, memory and quality.

Candidates are the recorded complete pipelines: each profile with its full-pipeline records (runs of
the full shape or of all stages; the streaming shape counts as its own candidate, minimal and custom
do not: they do different work). For every stage at the asked scale a figure is

- measured:      a successful record at that scale (the latest one),
- projected:     a record at that scale stopped at a limit or killed, whose projection the record
                 carries (`projected_wall_s`, `projection_kind`, `items_done`, when the store has them),
- interpolated / extrapolated: from the stage's fitted scaling curve (kura_perf/report/fits.py),
                 inside / outside the measured scales.

Quality (ARI) is the exception: it has no scaling curve (it can collapse between two scales), so it
is measured at the asked scale or shown as "not measured at <scale>", never carried over from another
scale. A measured ARI that collapsed against a smaller scale (report/quality_trend.py's rule) says so.

A pipeline figure takes the weakest basis of its stages. Candidates that break a limit
(--max-hours, --max-cost, --max-ram, --min-ari) are dropped with the limit and the figure named; of
the rest, those another candidate beats on every objective (no slower, no dearer, no bigger, no worse
ARI, and better on one) are dropped as dominated; what is left is the recommendation. A recommendation
needs something to compare: when only one candidate has figures at the scale, it is shown as "only
profile measured", not recommended. No Dagster here.

Quality names its data. Each record's data is what the conversations stage of its run recorded
(`extra.source`: "synthetic(seed=N)" for the generator, else the data file read), so every ARI figure
says whether it was scored on the synthetic corpus or on real data. A synthetic corpus tests the
machinery, not the choice (DESIGN §13): when any candidate has a real-data ARI for the asked scale,
quality ranks candidates on real-data ARI only. A candidate's own real-data records win over its
synthetic ones; a candidate with synthetic quality alone keeps its ARI on show, marked not ranked, and
it is not compared on quality (nor passes --min-ari) against real-data figures. The output says which.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.report import fmt
from kura_perf.report.data import load_report_data
from kura_perf.report.fits import EXTRAPOLATED, INTERPOLATED, MEASURED, UNKNOWN, fit_power_law, fit_stage
from kura_perf.report.quality_trend import QualityPoint, collapses
from kura_perf.stages.base import STAGES

PROJECTED = "projected"
NOT_MEASURED = "not measured"  # a quality figure at a scale without a run there: never extrapolated
ONLY_PROFILE = "only profile measured"  # the verdict when there is nothing to compare a profile with
BASIS_ORDER = (MEASURED, PROJECTED, INTERPOLATED, EXTRAPOLATED, NOT_MEASURED, UNKNOWN)  # strongest first
CANDIDATE_SHAPES = {None: "full", "full": "full", "streaming": "streaming"}
STOPPED = ("breaking_point", "died")
ADVICE_SCALES = (10_000, 100_000)  # what the report shows
SYNTHETIC_PREFIX = "synthetic"  # the conversations stage's extra.source for the generator: "synthetic(seed=0)"
DATA_SOURCE = "data_source"  # the column advise_runs adds: each record's conversations source, or None


class NothingFits(KuraPerfError):
    """No recorded profile meets the limits at the asked scale (the message says why for each)."""


def parse_scale(text: str) -> int:
    """'100k', '1M', '2500', '10K' -> conversations."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(text))
    if not m:
        raise KuraPerfError(f"--scale: '{text}' is not a number of conversations (e.g. 10k, 100k, 1m, 2500)")
    n = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if n < 1:
        raise KuraPerfError(f"--scale: '{text}' must be at least 1 conversation")
    return int(n)


@dataclass(frozen=True)
class Figure:
    value: float | None
    basis: str
    note: str = ""
    data: str | None = None  # quality figures: the conversations they were scored on (extra.source)
    warning: str = ""  # quality figures: a measured collapse against a smaller scale

    def text(self, unit) -> str:
        if self.value is None:
            return self.note if self.basis == NOT_MEASURED and self.note else f"— ({self.basis})"
        return f"{unit(self.value)} ({self.basis})" + (f"; {self.warning}" if self.warning else "")


@dataclass(frozen=True)
class Limits:
    max_hours: float | None = None
    max_cost: float | None = None
    max_ram_gb: float | None = None
    min_ari: float | None = None

    def describe(self) -> str:
        parts = [f"--max-hours {self.max_hours:g}" if self.max_hours is not None else "",
                 f"--max-cost {self.max_cost:g}" if self.max_cost is not None else "",
                 f"--max-ram {self.max_ram_gb:g}" if self.max_ram_gb is not None else "",
                 f"--min-ari {self.min_ari:g}" if self.min_ari is not None else ""]
        return " ".join(p for p in parts if p) or "no limits"


@dataclass
class Candidate:
    profile: str
    shape: str
    hours: Figure
    cost_usd: Figure
    ram_gb: Figure
    ari: Figure
    verdict: str = ""  # recommended | dropped: ...
    reasons: list[str] = field(default_factory=list)
    ari_ranked: bool = True  # False: synthetic-only ARI while real-data ARI exists (shown, not compared)

    @property
    def ari_data(self) -> str:
        """What the ARI was scored on, for a table cell: 'real: chats.jsonl', 'synthetic (seed 0)'."""
        if self.ari.value is None:
            return fmt.MISSING
        return describe_source(self.ari.data) + ("" if self.ari_ranked else ", not ranked")

    @property
    def name(self) -> str:
        return self.profile if self.shape == "full" else f"{self.profile} ({self.shape})"

    @property
    def recommended(self) -> bool:
        return self.verdict == "recommended"

    @property
    def fits(self) -> bool:
        """Recommended, or the only profile measured (fits the limits; nothing to compare it with)."""
        return self.verdict in ("recommended", ONLY_PROFILE)


@dataclass
class Advice:
    scale_n: int
    limits: Limits
    candidates: list[Candidate]
    host: str
    metrics_dir: Path

    @property
    def recommended(self) -> list[Candidate]:
        return [c for c in self.candidates if c.recommended]

    @property
    def fitting(self) -> list[Candidate]:
        """Recommended or the only profile measured: what the limits leave."""
        return [c for c in self.candidates if c.fits]

    def quality_warnings(self) -> list[str]:
        """A measured quality collapse at this scale, one line per candidate that has one."""
        return [f"{c.name}: {c.ari.warning}" for c in self.candidates if c.ari.warning]

    def table(self) -> pd.DataFrame:
        rows = [{"candidate": c.name, "time": c.hours.text(lambda h: fmt.seconds(h * 3600)),
                 "cost": c.cost_usd.text(lambda v: f"${v:,.2f}"), "peak RAM": c.ram_gb.text(fmt.memory_gb),
                 "ARI": c.ari.text(lambda v: f"{v:.3f}"), "ARI data": c.ari_data, "verdict": c.verdict}
                for c in self.candidates]
        return pd.DataFrame(rows, columns=["candidate", "time", "cost", "peak RAM", "ARI", "ARI data", "verdict"])

    @property
    def real_quality(self) -> bool:
        """True when some candidate's ARI at this scale was scored on real data (quality then ranks on it)."""
        return any(c.ari.value is not None and is_real(c.ari.data) for c in self.candidates)

    def quality_note(self) -> str:
        """One line on the data behind the ARI column and how it was used."""
        groups: dict[str, list[str]] = {}
        for c in self.candidates:
            if c.ari.value is not None:
                groups.setdefault(describe_source(c.ari.data), []).append(c.name)
        if not groups:
            return "Quality (ARI): no candidate has a quality figure at this scale."
        data = "; ".join(f"{source} for {', '.join(names)}" for source, names in groups.items())
        if self.real_quality:
            unranked = [c.name for c in self.candidates if not c.ari_ranked]
            tail = (f"; synthetic-only ARI ({', '.join(unranked)}) is shown but not ranked" if unranked else "")
            return f"Quality (ARI) scored on {data}. Ranked on real-data quality only{tail}."
        if any(is_synthetic(c.ari.data) for c in self.candidates if c.ari.value is not None):
            return (f"Quality (ARI) scored on {data}. No real-data records at this scale: quality ranks on the "
                    "synthetic corpus, which tests the machinery, not the choice; record a profile with a "
                    "data_file to rank on real data.")
        return f"Quality (ARI) scored on {data}."

    def refusal(self) -> str:
        why = "; ".join(f"{c.name}: {c.verdict.removeprefix('dropped: ')}" for c in self.candidates)
        hint = "relax a limit, or record" if self.limits.describe() != "no limits" else "record"
        return (f"no recorded profile fits {fmt.conversations(self.scale_n)} conversations with {self.limits.describe()} "
                f"on {self.host}: {why}. To get advice, {hint} runs at more scales or of other profiles "
                "(kura-perf run --scale 1k|10k --profile ...).")


def _known(source) -> str | None:
    """The source as a string, or None: pandas turns a missing source into NaN once frames are combined."""
    return source if isinstance(source, str) and source else None


def is_synthetic(source: str | None) -> bool:
    source = _known(source)
    return source is not None and source.startswith(SYNTHETIC_PREFIX)


def is_real(source: str | None) -> bool:
    return _known(source) is not None and not is_synthetic(source)


def describe_source(source: str | None) -> str:
    source = _known(source)
    if source is None:
        return "data unknown"
    if is_synthetic(source):
        seed = re.fullmatch(r"synthetic\(seed=(-?\d+)\)", source)
        return f"synthetic corpus (seed {seed.group(1)})" if seed else "synthetic corpus"
    return f"real data: {Path(source).name}"


def _source_of_extra(extra) -> str | None:
    if not isinstance(extra, str) or not extra:
        return None
    try:
        source = json.loads(extra).get("source")
    except (ValueError, AttributeError):
        return None
    return str(source) if source else None


def with_data_sources(runs: pd.DataFrame) -> pd.DataFrame:
    """The records with a DATA_SOURCE column: the source the conversations stage of the same run
    recorded; for a run that reused stored conversations, the latest conversations record of the same
    configuration and scale, else of the profile; None when nothing says (records without `extra`)."""
    if runs.empty or "extra" not in runs or "stage" not in runs:
        return runs.assign(**{DATA_SOURCE: None})
    conv = runs[(runs["stage"] == "conversations") & (runs["status"] == "success")]
    if "finished_at" in conv:
        conv = conv.sort_values("finished_at")
    conv = conv.assign(_src=conv["extra"].map(_source_of_extra)).dropna(subset=["_src"])
    by_run = dict(zip(conv["run_id"], conv["_src"])) if "run_id" in conv else {}
    has_hash = "profile_hash" in conv
    by_config = {(h, n): src for h, n, src in zip(conv["profile_hash"], conv["scale_n"], conv["_src"])} if has_hash else {}
    by_profile = dict(zip(conv["profile"], conv["_src"]))

    def source(row) -> str | None:
        found = by_run.get(row.get("run_id"))
        if found is None and has_hash:
            found = by_config.get((row.get("profile_hash"), row.get("scale_n")))
        return found if found is not None else by_profile.get(row.get("profile"))

    return runs.assign(**{DATA_SOURCE: [source(row) for row in runs.to_dict("records")]})


def _weakest(bases) -> str:
    bases = list(bases)
    return max(bases, key=BASIS_ORDER.index) if bases else UNKNOWN


def _num(value) -> float | None:
    return None if fmt.is_missing(value) else float(value)


def _stage_figures(stage_rows: pd.DataFrame, n: int) -> dict:
    """wall s, peak MB, cost USD and (clusters) ARI of one stage at n, each with its basis."""
    ok = stage_rows[stage_rows["status"] == "success"].sort_values("finished_at")
    at_n = ok[ok["scale_n"] == n]
    if len(at_n):
        row = at_n.iloc[-1]
        return {"wall": Figure(_num(row["wall_s"]), MEASURED), "peak": Figure(_num(row["peak_rss_mb"]), MEASURED),
                "cost": Figure(_num(row.get("cost_usd")) or 0.0, MEASURED), "ari": _ari_figure(ok, n)}
    stopped = stage_rows[stage_rows["status"].isin(STOPPED) & (stage_rows["scale_n"] == n)].sort_values("finished_at")
    if len(stopped) and "projected_wall_s" in stopped and not fmt.is_missing(stopped.iloc[-1]["projected_wall_s"]):
        row = stopped.iloc[-1]
        kind = row.get("projection_kind") if "projection_kind" in stopped else None
        done = _num(row.get("items_done")) if "items_done" in stopped else None
        total = (_num(row.get("items_total")) if "items_total" in stopped else None) or n
        cost = _num(row.get("cost_usd")) or 0.0
        if done:
            cost *= total / done  # the calls it made so far, for every item it had
        note = f"stopped ({row['status']}); {kind or 'projection'} from {int(done) if done else '?'} items"
        return {"wall": Figure(_num(row["projected_wall_s"]), PROJECTED, note),
                "peak": Figure(_num(row["peak_rss_mb"]), PROJECTED, "at least the peak when stopped"),
                "cost": Figure(cost, PROJECTED, note), "ari": Figure(None, UNKNOWN)}
    if ok.empty:
        return {k: Figure(None, UNKNOWN, "no successful record") for k in ("wall", "peak", "cost", "ari")}
    fit = fit_stage(str(ok["stage"].iloc[0]), ok)
    wall, peak = fit.wall_at(n), fit.peak_at(n)
    costs = ok.assign(c=ok["cost_usd"].fillna(0.0))
    cost_fit = fit_power_law(costs["scale_n"], costs["c"]) if (costs["c"] > 0).any() else None
    if (costs["c"] <= 0).all():
        cost = Figure(0.0, wall.basis if wall.value is not None else EXTRAPOLATED, "no API calls")
    elif cost_fit is not None:
        cost = Figure(cost_fit.predict(n), cost_fit.basis(n), cost_fit.describe())
    else:  # one scale with a cost: tokens grow with conversations, so linear
        largest = costs.sort_values("scale_n").iloc[-1]
        cost = Figure(float(largest["c"]) * n / float(largest["scale_n"]), EXTRAPOLATED, "linear in conversations")
    return {"wall": Figure(wall.value, wall.basis, wall.note), "peak": Figure(peak.value, peak.basis, peak.note),
            "cost": cost, "ari": _ari_figure(ok, n)}


def _ari_figure(ok: pd.DataFrame, n: int) -> Figure:
    """The ARI at n from successful rows (finished_at order): the latest measured at n, else none (a
    NOT_MEASURED figure naming the scales it was measured at). Real-data rows are preferred to synthetic
    ones when the candidate has both: then a synthetic ARI at n does not stand in for a real one."""
    on = ""
    if DATA_SOURCE in ok and "ari" in ok:
        real = ok[ok[DATA_SOURCE].map(is_real) & ok["ari"].notna()]
        if len(real):
            ok, on = real, " on real data"
    at_n = ok[ok["scale_n"] == n]
    if len(at_n):
        row = at_n.iloc[-1]
        ari = _num(row.get("ari"))
        return Figure(ari, MEASURED, data=_text(row.get(DATA_SOURCE)), warning=_collapse_at(ok, n, ari))
    # Quality has no scaling law: the clusters found at 10K say nothing of those at 1M (ARI may collapse
    # between them), so a scale without a run has no quality figure, only a note saying so.
    measured = ", ".join(fmt.conversations(m) for m in sorted(ok.loc[ok["ari"].notna(), "scale_n"].unique())) \
        if "ari" in ok else ""
    return Figure(None, NOT_MEASURED, f"not measured at {fmt.conversations(n)}{on}"
                  + (f" (measured at {measured})" if measured else ""))


def _collapse_at(ok: pd.DataFrame, n: int, ari: float | None) -> str:
    """'collapsed from 0.968 at 10K' when the ARI at n fell against the best ARI at a smaller scale by
    quality_trend's rule (the rule the report's summary uses), else ''."""
    if ari is None or "ari" not in ok:
        return ""
    latest = ok[ok["ari"].notna() & (ok["scale_n"] < n)].groupby("scale_n").tail(1)
    points = [QualityPoint(int(m), float(a)) for m, a in zip(latest["scale_n"], latest["ari"])]
    found = [c for c in collapses("", points + [QualityPoint(n, ari)]) if c.to_n == n]
    if not found:
        return ""
    c = found[0]
    return f"quality collapsed: ARI {c.from_ari:.3f} at {fmt.conversations(c.from_n)} → {c.to_ari:.3f} here"


def _text(value) -> str | None:
    return None if fmt.is_missing(value) else str(value)


def candidate_figures(records: pd.DataFrame, n: int) -> tuple[Figure, Figure, Figure, Figure]:
    """(hours, USD, peak decimal GB (the meter's MiB converted), ARI) of one candidate's full pipeline at n conversations."""
    per_stage = {stage: _stage_figures(records[records["stage"] == stage], n)
                 for stage in STAGES if (records["stage"] == stage).any()}
    missing = [s for s in STAGES if s not in per_stage]
    if missing:
        unknown = Figure(None, UNKNOWN, f"no record of {', '.join(missing)}")
        return unknown, unknown, unknown, per_stage.get("clusters", {}).get("ari", Figure(None, UNKNOWN))
    walls = [f["wall"] for f in per_stage.values()]
    peaks = [f["peak"] for f in per_stage.values()]
    costs = [f["cost"] for f in per_stage.values()]

    def combine(figs, how, scale=1.0):
        if any(f.value is None for f in figs):
            return Figure(None, UNKNOWN, "a stage has one measured scale and none at this one, so no curve to project")
        return Figure(how(f.value for f in figs) * scale, _weakest(f.basis for f in figs))

    return (combine(walls, sum, 1 / 3600), combine(costs, sum), combine(peaks, max, fmt.MIB / 10**9),
            per_stage["clusters"]["ari"])


def _limit_breaks(c: Candidate, limits: Limits) -> list[str]:
    out = []
    checks = [(limits.max_hours, c.hours, "--max-hours", lambda v: fmt.seconds(v * 3600), False),
              (limits.max_cost, c.cost_usd, "--max-cost", lambda v: f"${v:,.2f}", False),
              (limits.max_ram_gb, c.ram_gb, "--max-ram", fmt.memory_gb, False),
              (limits.min_ari, c.ari, "--min-ari", lambda v: f"{v:.3f}", True)]
    for limit, figure, flag, unit, at_least in checks:
        if limit is None:
            continue
        if figure is c.ari and not c.ari_ranked:
            out.append(f"{flag} {limit:g}: no real-data ARI at this scale (synthetic corpus only: "
                       f"{unit(figure.value)} not used while real-data quality exists)")
        elif figure.value is None:
            out.append(f"{flag} {limit:g}: no estimate at this scale ({figure.note or figure.basis})")
        elif (figure.value < limit) if at_least else (figure.value > limit):
            out.append(f"breaks {flag} {limit:g} ({'has' if at_least else 'needs'} {unit(figure.value)}, {figure.basis})")
    return out


def _objectives(c: Candidate) -> list[float | None]:
    """Smaller is better for each; ARI negated. None where unknown (that objective is then not compared)."""
    ari = None if c.ari.value is None or not c.ari_ranked else -c.ari.value
    return [c.hours.value, c.cost_usd.value, c.ram_gb.value, ari]


def _dominates(a: Candidate, b: Candidate) -> bool:
    pairs = [(x, y) for x, y in zip(_objectives(a), _objectives(b)) if x is not None and y is not None]
    return bool(pairs) and all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def _better_on(a: Candidate, b: Candidate) -> str:
    names = ["faster", "cheaper", "smaller", "better ARI"]
    return ", ".join(n for n, x, y in zip(names, _objectives(a), _objectives(b))
                     if x is not None and y is not None and x < y)


def choose(candidates: list[Candidate], limits: Limits) -> list[Candidate]:
    """Mark each candidate recommended or dropped (with why); order: recommended first, by time."""
    fitting = []
    estimated = [c for c in candidates if c.hours.value is not None and c.ram_gb.value is not None]
    for c in candidates:
        if c.hours.value is None or c.ram_gb.value is None:
            c.verdict = f"dropped: no estimate: {c.hours.note or c.ram_gb.note}"
            continue
        breaks = _limit_breaks(c, limits)
        if breaks:
            c.verdict = "dropped: " + "; ".join(breaks)
        else:
            fitting.append(c)
    for c in fitting:
        better = [o for o in fitting if o is not c and _dominates(o, c)]
        if better:
            best = min(better, key=lambda o: o.hours.value)
            c.verdict = f"dropped: dominated by {best.name} ({_better_on(best, c)})"
        elif len(estimated) == 1:
            c.verdict = ONLY_PROFILE  # a recommendation needs something to be recommended over
        else:
            c.verdict = "recommended"
    inf = math.inf
    return sorted(candidates, key=lambda c: (not c.fits, c.hours.value if c.hours.value is not None else inf))


def advise(metrics_dir: Path, scale_n: int, limits: Limits = Limits()) -> Advice:
    """The advice for scale_n from the store's records (the best-covered host, as in the report)."""
    data = load_report_data(metrics_dir)
    if data.runs.empty:
        raise NothingFits(f"no runs recorded in {metrics_dir}: record some first, e.g. "
                          "kura-perf run --scale 1k --profile offline (and 10k, other profiles)")
    return advise_runs(data.runs, scale_n, limits, data.host.describe() if data.host else "no host", metrics_dir)


def advise_runs(runs: pd.DataFrame, scale_n: int, limits: Limits, host: str, metrics_dir: Path) -> Advice:
    """The advice from one host's stage records (what the report has loaded already)."""
    if "shape" not in runs:
        runs = runs.assign(shape=None)
    runs = runs.assign(_candidate=runs["shape"].map(lambda s: CANDIDATE_SHAPES.get(None if fmt.is_missing(s) else s)))
    runs = with_data_sources(runs)  # before narrowing: a run's conversations record may be of any shape
    runs = runs[runs["_candidate"].notna()]
    candidates = []
    for (profile, shape), rows in runs.groupby(["profile", "_candidate"], sort=True):
        hours, cost, ram, ari = candidate_figures(rows, scale_n)
        candidates.append(Candidate(str(profile), str(shape), hours, cost, ram, ari))
    if not candidates:
        raise NothingFits(f"no full-pipeline runs recorded in {metrics_dir} (only minimal or custom shapes): "
                          "record one with kura-perf run --scale 1k")
    if any(c.ari.value is not None and is_real(c.ari.data) for c in candidates):
        for c in candidates:  # never ranked on synthetic quality alone against real-data quality
            c.ari_ranked = c.ari.value is None or is_real(c.ari.data)
    return Advice(scale_n, limits, choose(candidates, limits), host, Path(metrics_dir))
