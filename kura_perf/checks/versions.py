"""Kura specs side by side (issue 21): per stage, each spec's figures, their ratio to the first spec's, and
a verdict. Time and peak memory get the regression checks' own noise-aware rule (regression.compare: over
the threshold AND beyond the noise band of the first spec's runs): slower / faster / same within noise
(larger / smaller for memory). API calls and tokens are deterministic counts for a corpus and seed:
more / fewer / same. Used by `kura-perf versions` and the report's "Kura versions" section.
"""

from __future__ import annotations

import pandas as pd

from kura_perf.checks.regression import compare

# (column, the regression metric whose noise rule gives its verdict, or None: a count)
FIGURES = (("wall_s", "wall_s"), ("cpu_s", "wall_s"), ("peak_mb", "peak_rss_mb"), ("calls", None), ("tokens", None))
FASTER = 0.10  # the mirror of the regression threshold: a "faster" must be as large as a "slower"
RECORD_SQL = ("SELECT record_id, run_id, profile, scale, stage, started_at, wall_s, cpu_user_s + cpu_sys_s AS cpu_s, "
              "peak_rss_mb AS peak_mb, api_calls AS calls, tokens_in + tokens_out AS tokens, kura_spec, "
              "kura_resolved, kura_version, sim_speed_factor, code_version FROM stage_runs WHERE status = 'success'")


def verdict(values: list, baseline: list, metric: str | None) -> str:
    values = [float(v) for v in values if pd.notna(v)]
    baseline = [float(v) for v in baseline if pd.notna(v)]
    if not values or not baseline:
        return "-"
    value = sum(values) / len(values)
    if metric is None:
        first = sum(baseline) / len(baseline)
        return "same" if value == first else ("more" if value > first else "fewer")
    result = compare(value, baseline, metric=metric)
    if not result.passed:
        return "slower" if metric == "wall_s" else "larger"
    if result.noise_low is not None and value < result.noise_low and (result.ratio or 1) < 1 - FASTER:
        return "faster" if metric == "wall_s" else "smaller"
    return "same within noise"


def _mean(values) -> float | None:
    values = [float(v) for v in values if pd.notna(v)]
    return sum(values) / len(values) if values else None


def quality_text(levels: pd.DataFrame) -> dict[tuple[str, str], str]:
    """{(spec, stage): "L0 0.71 L1 0.55"}: ARI per level at each stage's finest truth level, averaged over
    runs. levels: quality_levels rows with a kura_spec column."""
    if levels is None or not len(levels):
        return {}
    finest = levels["truth_rank"] == levels.groupby(["kura_spec", "stage"])["truth_rank"].transform("max")
    means = levels[finest].groupby(["kura_spec", "stage", "level"])["ari"].mean().reset_index()
    out: dict[tuple[str, str], str] = {}
    for (spec, stage), group in means.groupby(["kura_spec", "stage"]):
        out[(spec, stage)] = " ".join(f"L{int(r.level)} {r.ari:.2f}" for r in group.itertuples())
    return out


def side_by_side(records: pd.DataFrame, specs: list[str], labels: dict[str, str] | None = None,
                 levels: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (stage, spec): figures (means over the spec's runs), `<figure> x` ratios to the first
    spec, quality per level and the verdicts. records: successful stage records (RECORD_SQL's columns)."""
    quality = quality_text(levels)
    first = specs[0]
    rows = []
    for stage in dict.fromkeys(records["stage"]):
        here = records[records["stage"] == stage]
        base = here[here["kura_spec"] == first]
        for spec in specs:
            mine = here[here["kura_spec"] == spec]
            row = {"stage": stage, "spec": spec, "kura": (labels or {}).get(spec, ""), "runs": len(mine)}
            verdicts = []
            for column, metric in FIGURES:
                mean, base_mean = _mean(mine[column]), _mean(base[column])
                row[column] = mean
                row[f"{column} x"] = mean / base_mean if mean is not None and base_mean else None
                if spec != first:
                    verdicts.append(f"{column.split('_')[0]} {verdict(list(mine[column]), list(base[column]), metric)}")
            row["quality (ARI per level)"] = quality.get((spec, stage), "")
            row["verdict"] = "baseline" if spec == first else ", ".join(verdicts)
            rows.append(row)
    return pd.DataFrame(rows)


def regressions(table: pd.DataFrame) -> list[str]:
    """The (stage, spec) rows whose verdict says worse: slower, larger, or more calls or tokens."""
    return [f"{row.stage} {row.spec}: {row.verdict}" for row in table.itertuples()
            if any(word in str(row.verdict) for word in ("slower", "larger", "calls more", "tokens more"))]


def latest_comparisons(metrics_dir) -> list[tuple[str, str, pd.DataFrame, list[str], pd.DataFrame | None]]:
    """What the report shows: per (profile, scale) with records from Kura specs, each spec's latest run,
    the specs ordered by when that run started (`kura-perf versions` runs its baseline first):
    [(profile, scale, side_by_side table, specs, ...)]."""
    from kura_perf.store import query

    try:
        records = query(metrics_dir, f"{RECORD_SQL} AND kura_spec IS NOT NULL ORDER BY started_at")
    except Exception:  # noqa: BLE001 - an empty store, or one written before the kura_spec column
        return []
    out = []
    for (profile, scale), group in records.groupby(["profile", "scale"], sort=True):
        latest = group.groupby("kura_spec")["started_at"].max()
        run_of = {spec: group[(group["kura_spec"] == spec)].sort_values("started_at")["run_id"].iloc[-1]
                  for spec in latest.index}
        mine = group[group["run_id"].isin(run_of.values())]
        specs = list(mine.groupby("kura_spec")["started_at"].min().sort_values().index)
        labels = {}
        for spec in specs:
            row = mine[mine["kura_spec"] == spec].iloc[-1]
            resolved = str(row["kura_resolved"] or "")
            labels[spec] = str(row["kura_version"] or "") + (f" @{resolved[:10]}" if resolved and
                                                             resolved != row["kura_version"] else "")
        try:
            marks = ", ".join("?" for _ in run_of)
            levels = query(metrics_dir, "SELECT s.kura_spec, q.stage, q.level, q.truth_rank, q.ari FROM quality_levels q "
                                        f"JOIN stage_runs s USING (record_id) WHERE q.run_id IN ({marks})",
                           list(run_of.values()))
        except Exception:  # noqa: BLE001 - no quality_levels files: no clustering stage ran
            levels = None
        out.append((profile, scale, side_by_side(mine, specs, labels, levels), specs, mine))
    return out
