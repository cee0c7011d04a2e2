"""Two pipelines side by side (`kura-perf compare reference:reference-simulated kura:kura-tier5`):
per scale, per stage and in total, wall time, peak memory, storage, API calls, 429s, cost and quality,
with the right/left ratio of each, each stage's outcome, and the largest scale at which each side
completed within its limits. One scale (`--scale 10k`) reads the store's `comparison` view; every
scale (the default) reads the latest record of each stage per partition, any status. Beside the stage
figures (whose ARI/NMI are the base clusters' against the finest truth level), the table view shows,
per truth level (e.g. CLINC150's domain and intent), each side's topic level and its ARI/NMI.

A stage that failed or was stopped is a result, not a gap: a Kura summaries stage that gave up after
429s at 10K under a given rate limit is the measured "tier × scale" outcome and is shown as such. A
side with no records at all is a gap: `NoRecords` names it, the scales asked and the command that would
record them, instead of a table of dashes (the CLI exits 1: the command line was fine, the store lacks
the runs). A side whose profile does not belong to its backend (`kura:offline`) is bad input, refused
by `check_sides` before the store is read.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.report import fmt
from kura_perf.report.fmt import conversations
from kura_perf.scales import SCALES
from kura_perf.stages.base import STAGES
from kura_perf.store import query

FIGURES = ("wall_s", "peak_rss_mb", "bytes_written", "api_calls", "api_429s", "cost_usd", "ari", "nmi")
MATRIX_FIGURES = (*FIGURES, "n_clusters", "v_measure")
SUMMED = ("wall_s", "bytes_written", "api_calls", "api_429s", "cost_usd")
QUALITY = ("ari", "nmi", "n_clusters", "v_measure")  # the whole pipeline's quality is its base clusters'
RATE_LIMITED = "rate-limited"
BACKENDS = ("reference", "kura")


class NoRecords(KuraPerfError):
    """A side of the comparison has no recorded runs at the scales asked (on the host compared): not bad
    input but a store that lacks the runs; the message names the side, the scales and the command that
    records them, one line per side. `kura-perf compare` exits 1 on it."""


def parse_side(side: str) -> tuple[str, str]:
    backend, sep, profile = side.partition(":")
    if not sep or backend not in BACKENDS or not profile:
        raise KuraPerfError(f"'{side}': expected backend:profile with backend one of {', '.join(BACKENDS)} "
                            f"(e.g. reference:offline or kura:kura)")
    return backend, profile


def check_sides(sides, profiles: dict) -> None:
    """Refuse a side whose profile is unknown or runs on the other backend (`kura:offline`: offline's
    backend is reference), naming the profiles that do fit that side. `profiles`: name -> Profile, as
    RunSettings.profiles() gives them (the built-in ones plus the user's file)."""
    for side in sides:
        backend, profile = parse_side(side)
        fitting = ", ".join(name for name, p in profiles.items() if p.backend == backend) or "none"
        if profile not in profiles:
            raise KuraPerfError(f"'{side}': unknown profile '{profile}'; {backend} profiles: {fitting} "
                                f"(your own: --profiles FILE or KURA_PERF_PROFILES)")
        actual = profiles[profile].backend
        if actual != backend:
            raise KuraPerfError(f"'{side}': profile '{profile}' runs on the {actual} backend, not {backend} "
                                f"(compare it as {actual}:{profile}); {backend} profiles: {fitting}")


def fill_command(profile: str, scales: list[str]) -> str:
    """The command that records `profile` at `scales` (one scale: run; several: matrix)."""
    if len(scales) > 1:
        return f"kura-perf matrix --scales {' '.join(scales)} --profiles {profile}"
    return f"kura-perf run --scale {scales[0] if scales else '1k'} --profile {profile}"


def missing_line(side: str, scales: list[str], host: str | None = None, elsewhere: list[str] | None = None,
                 label: str = "") -> str:
    """One line: `side` has no recorded runs at `scales` (on `host`), and the command that records them."""
    _, profile = parse_side(side)
    at = f"scale {scales[0]}" if len(scales) == 1 else (f"scales {', '.join(scales)}" if scales else "any scale")
    where = ""
    if host is not None and elsewhere:
        where = (f" on host {host} (its runs are on host {', '.join(elsewhere)}; both sides are compared on one "
                 f"host, --host picks which)")
    return (f"{label}{side} has no recorded runs at {at}{where}: record them{' on ' + host if where else ''} with "
            f"`{fill_command(profile, scales)}`")


def _side_rows(view: pd.DataFrame, side: str, scale: str, host: str | None) -> pd.DataFrame:
    backend, profile = parse_side(side)
    rows = view[(view["backend"] == backend) & (view["profile"] == profile) & (view["scale"] == scale)]
    if host is not None:
        rows = rows[rows["host_fingerprint"] == host]
    return rows


def _ratio(right, left) -> float:
    if left is None or right is None or pd.isna(left) or pd.isna(right) or left == 0:
        return math.nan
    return float(right) / float(left)


def compare_partitions(metrics_dir: str | Path, scale: str, left: str, right: str,
                       host: str | None = None) -> pd.DataFrame:
    """One row per stage plus 'total': status and each figure for left and right, and right/left.

    Both sides come from the same host (the most recent one both have, unless `host` is given), so
    the ratios compare pipelines, not machines.
    """
    view = query(Path(metrics_dir), "SELECT * FROM comparison WHERE scale = ?", [scale])
    left_rows, right_rows = _side_rows(view, left, scale, host), _side_rows(view, right, scale, host)
    empty = [(label, side, rows) for label, side, rows in (("L ", left, left_rows), ("R ", right, right_rows))
             if rows.empty]
    if empty:
        raise NoRecords("\n".join(
            missing_line(side, [scale], host, sorted(set(_side_rows(view, side, scale, None)["host_fingerprint"])),
                         label) for label, side, _ in empty))
    if host is None:
        shared = set(left_rows["host_fingerprint"]) & set(right_rows["host_fingerprint"])
        if not shared:
            raise NoRecords(f"{left} and {right} at scale {scale} were never measured on the same host "
                            f"(L on {', '.join(sorted(set(left_rows['host_fingerprint'])))}, R on "
                            f"{', '.join(sorted(set(right_rows['host_fingerprint'])))}): record both on one host "
                            f"(`kura-perf run --scale {scale} --profile PROFILE`)")
        latest = pd.concat([left_rows, right_rows])
        host = latest[latest["host_fingerprint"].isin(shared)].sort_values("finished_at")["host_fingerprint"].iloc[-1]
        left_rows = left_rows[left_rows["host_fingerprint"] == host]
        right_rows = right_rows[right_rows["host_fingerprint"] == host]
    by_stage_left = left_rows.set_index("stage")
    by_stage_right = right_rows.set_index("stage")
    rows = []
    for stage in (*STAGES, "total"):
        row = {"stage": stage}
        l_rec = by_stage_left.loc[stage] if stage in by_stage_left.index else None
        r_rec = by_stage_right.loc[stage] if stage in by_stage_right.index else None
        row["status_left"] = l_rec["status"] if l_rec is not None else "missing"
        row["status_right"] = r_rec["status"] if r_rec is not None else "missing"
        for figure in FIGURES:
            lv = l_rec[figure] if l_rec is not None else None
            rv = r_rec[figure] if r_rec is not None else None
            row[f"{figure}_left"] = _number(lv)
            row[f"{figure}_right"] = _number(rv)
            row[f"{figure}_ratio"] = _ratio(rv, lv)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(left=left, right=right, scale=scale, host_fingerprint=host)
    return table


def _number(value) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


# -- every scale ---------------------------------------------------------------------------------------
LATEST_SQL = """
    SELECT * EXCLUDE (rn) FROM (
        SELECT *, row_number() OVER (PARTITION BY backend, profile, scale, host_fingerprint, stage
                                     ORDER BY finished_at DESC) AS rn
        FROM stage_runs WHERE coalesce(metered, true) OR status <> 'success')
    WHERE rn = 1"""


def latest_per_stage(runs: pd.DataFrame) -> pd.DataFrame:
    """The latest record of each stage per backend, profile, scale and host, any status (as LATEST_SQL)."""
    if runs.empty:
        return runs
    keep = runs["metered"].fillna(True).astype(bool) | (runs["status"] != "success") if "metered" in runs else True
    rows = runs[keep].sort_values("finished_at")
    return rows.groupby(["backend", "profile", "scale", "host_fingerprint", "stage"], dropna=False).tail(1)


def stage_outcome(record) -> str:
    """completed | rate-limited (429 × n) | stopped at a limit (projected) | failed | not run."""
    if record is None:
        return "not run"
    status = record.get("status")
    if status == "success":
        return "completed"
    r429 = rate_limited_calls(record)
    if status == "failed" and r429:
        return f"{RATE_LIMITED} (failed after {r429} × 429)"
    if status == "breaking_point":
        projected = record.get("projected_wall_s")
        return "stopped at a limit" + ("" if _missing(projected) else f", {projected:,.0f} s projected")
    return str(status or "failed")


_ANSWERED_429 = re.compile(r"(\d[\d,]*) answered 429")


def rate_limited_calls(record) -> int:
    """429s a stage got: the record's counter, else the count Kura's failure message gives (a Kura stage
    that aborts has its traffic counted from the simulator's log into the message), else 0."""
    r429 = record.get("api_429s")
    if not _missing(r429) and r429 > 0:
        return int(r429)
    match = _ANSWERED_429.search(str(record.get("error_message") or ""))
    if match:
        return int(match.group(1).replace(",", ""))
    return 1 if "RateLimitError" in str(record.get("error_message") or "") else 0


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value))


def _side_total(stages: dict) -> dict:
    """The partition's total for one side: sums, the largest stage peak, the base clusters' quality."""
    total = {"status": "success" if len(stages) == len(STAGES) and all(
        r.get("status") == "success" for r in stages.values()) else "incomplete"}
    for figure in SUMMED:
        values = [r.get(figure) for r in stages.values() if not _missing(r.get(figure))]
        total[figure] = float(sum(values)) if values else math.nan
    peaks = [r.get("peak_rss_mb") for r in stages.values() if not _missing(r.get("peak_rss_mb"))]
    total["peak_rss_mb"] = float(max(peaks)) if peaks else math.nan
    for figure in QUALITY:
        clusters = stages.get("clusters") or {}
        total[figure] = _number(clusters.get(figure))
    broken = [f"{stage}: {stage_outcome(r)}" for stage, r in stages.items() if r.get("status") != "success"]
    total["outcome"] = "completed" if total["status"] == "success" else ("; ".join(broken) or "incomplete")
    return total


def _side(latest: pd.DataFrame, side: str) -> pd.DataFrame:
    backend, profile = parse_side(side)
    return latest[(latest["backend"] == backend) & (latest["profile"] == profile)]


def _shared_host(left: pd.DataFrame, right: pd.DataFrame) -> str | None:
    shared = set(left["host_fingerprint"].dropna()) & set(right["host_fingerprint"].dropna())
    if not shared:
        return None
    both = pd.concat([left, right])
    return both[both["host_fingerprint"].isin(shared)].sort_values("finished_at")["host_fingerprint"].iloc[-1]


def largest_completed(side_rows: pd.DataFrame) -> int | None:
    """The largest scale at which every stage of this side completed (no failure, no limit hit)."""
    done = [int(n) for n, rows in side_rows.groupby("scale_n")
            if set(rows.loc[rows["status"] == "success", "stage"]) >= set(STAGES)]
    return max(done) if done else None


def side_by_side(latest: pd.DataFrame, left: str, right: str, scales: list[str] | None = None,
                 host: str | None = None) -> pd.DataFrame:
    """Rows (scale, stage) for every scale either side ran (or `scales`), stages then 'total': each
    side's outcome and figures, and right/left ratios. attrs: host, each side's largest completed scale,
    and each side's missing scales (asked, or run by the other side, but not recorded for it on the host);
    a scale neither side has is left out. compare_scales refuses a side missing at every scale."""
    left_rows, right_rows = _side(latest, left), _side(latest, right)
    if scales is not None:
        left_rows, right_rows = left_rows[left_rows["scale"].isin(scales)], right_rows[right_rows["scale"].isin(scales)]
    if left_rows.empty and right_rows.empty:
        raise NoRecords("\n".join(missing_line(side, list(scales or []), label=label)
                                  for label, side in (("L ", left), ("R ", right))))
    if host is None:
        host = _shared_host(left_rows, right_rows) if len(left_rows) and len(right_rows) else None
        if host is None:  # one side never ran (or never on the same host): show what there is, on its host
            pool = left_rows if len(left_rows) else right_rows
            host = pool.sort_values("finished_at")["host_fingerprint"].iloc[-1]
    left_rows = left_rows[left_rows["host_fingerprint"] == host]
    right_rows = right_rows[right_rows["host_fingerprint"] == host]
    present = set(left_rows["scale"]) | set(right_rows["scale"])
    asked = [s for s in SCALES if (s in present if scales is None else s in scales)]
    wanted = [s for s in asked if s in present]
    rows = []
    for scale in wanted:
        by_side = {name: {r["stage"]: r for r in part[part["scale"] == scale].to_dict("records")}
                   for name, part in (("left", left_rows), ("right", right_rows))}
        for stage in (*STAGES, "total"):
            row = {"scale": scale, "scale_n": SCALES[scale], "stage": stage}
            for name, stages in by_side.items():
                record = _side_total(stages) if stage == "total" and stages else stages.get(stage)
                row[f"status_{name}"] = (record or {}).get("status", "not run")
                row[f"outcome_{name}"] = (record.get("outcome") if stage == "total" and record
                                          else stage_outcome(record))
                for figure in MATRIX_FIGURES:
                    row[f"{figure}_{name}"] = _number((record or {}).get(figure))
            for figure in MATRIX_FIGURES:
                row[f"{figure}_ratio"] = _ratio(row[f"{figure}_right"], row[f"{figure}_left"])
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(left=left, right=right, host_fingerprint=host, asked=asked,
                       largest_completed_left=largest_completed(left_rows),
                       largest_completed_right=largest_completed(right_rows),
                       missing_left=[s for s in asked if s not in set(left_rows["scale"])],
                       missing_right=[s for s in asked if s not in set(right_rows["scale"])])
    return table


def compare_scales(metrics_dir: str | Path, left: str, right: str, scales: list[str] | None = None,
                   host: str | None = None) -> pd.DataFrame:
    """side_by_side over the store's records; NoRecords when a side has no record at any scale asked
    (on the host compared), rather than a table whose every figure of that side is a dash."""
    parse_side(left), parse_side(right)
    latest = query(Path(metrics_dir), LATEST_SQL)
    table = side_by_side(latest, left, right, scales, host)
    a = table.attrs
    gone = [(label, side) for label, side in (("L ", left), ("R ", right))
            if a[f"missing_{'left' if label == 'L ' else 'right'}"] == a["asked"]]
    if gone:
        lines = []
        for label, side in gone:
            rows = _side(latest, side)
            if scales is not None:
                rows = rows[rows["scale"].isin(scales)]
            elsewhere = sorted(set(rows["host_fingerprint"].dropna()) - {a["host_fingerprint"]})
            lines.append(missing_line(side, a["asked"], a["host_fingerprint"] if elsewhere else None, elsewhere,
                                      label))
        raise NoRecords("\n".join(lines))
    return table


def missing_lines(table: pd.DataFrame) -> list[str]:
    """One line per side that lacks some of the scales shown or asked: which, and how to record them."""
    a = table.attrs
    return [missing_line(a[name], a[f"missing_{name}"], label=f"{label} ")
            for name, label in (("left", "L"), ("right", "R")) if a.get(f"missing_{name}")]


# -- quality per truth level ------------------------------------------------------------------------
TRUTH_FIGURES = ("level", "n_clusters", "true_classes", "ari", "nmi", "topics_found")


def topic_levels_side_by_side(levels: pd.DataFrame, left: str, right: str, host: str | None,
                              scales: list[str] | None = None) -> pd.DataFrame:
    """Rows (scale, truth level): each side's topic level for that truth level (the hierarchy level
    nearest its class count) with its ARI, NMI and classes found, and right/left ratios. `levels`: the
    store's quality_by_level view (latest run per partition and host). Truth levels coarse to fine."""
    columns = ["scale", "truth_level", *(f"{f}_{s}" for f in TRUTH_FIGURES for s in ("left", "right")),
               "ari_ratio", "nmi_ratio"]
    if levels is None or levels.empty:
        return pd.DataFrame(columns=columns)
    topic = levels[levels["is_topic_level"].fillna(False).astype(bool)]
    if host is not None:
        topic = topic[topic["host_fingerprint"] == host]
    sides = {}
    for name, side in (("left", left), ("right", right)):
        backend, profile = parse_side(side)
        sides[name] = topic[(topic["backend"] == backend) & (topic["profile"] == profile)]
    present = set(sides["left"]["scale"]) | set(sides["right"]["scale"])
    rows = []
    for scale in [s for s in SCALES if s in present and (scales is None or s in scales)]:
        per_side = {name: part[part["scale"] == scale] for name, part in sides.items()}
        ranks = pd.concat(per_side.values())[["truth_level", "truth_rank"]].drop_duplicates("truth_level")
        for truth in ranks.sort_values("truth_rank")["truth_level"]:
            row = {"scale": scale, "truth_level": truth}
            for name, part in per_side.items():
                match = part[part["truth_level"] == truth]
                record = match.iloc[0].to_dict() if len(match) else {}
                for figure in TRUTH_FIGURES:
                    row[f"{figure}_{name}"] = _number(record.get(figure))
            row["ari_ratio"] = _ratio(row["ari_right"], row["ari_left"])
            row["nmi_ratio"] = _ratio(row["nmi_right"], row["nmi_left"])
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def compare_truth_levels(metrics_dir: str | Path, left: str, right: str, host: str | None,
                         scales: list[str] | None = None) -> pd.DataFrame:
    """topic_levels_side_by_side over the store's quality_by_level view."""
    return topic_levels_side_by_side(query(Path(metrics_dir), "SELECT * FROM quality_by_level"), left, right,
                                     host, scales)


def render_truth_levels(block: pd.DataFrame) -> str:
    """For a terminal: one line per truth level: the topic level and ARI/NMI of each side."""
    lines = []
    for _, r in block.iterrows():
        def side(name: str, r=r) -> str:
            if pd.isna(r[f"level_{name}"]):
                return "-"
            return (f"level {int(r[f'level_{name}'])} ({_fmt(r[f'n_clusters_{name}'])} clusters) "
                    f"ARI {_fmt(r[f'ari_{name}'])} NMI {_fmt(r[f'nmi_{name}'])}")
        classes = r["true_classes_left"] if not pd.isna(r["true_classes_left"]) else r["true_classes_right"]
        lines.append(f"  truth '{r['truth_level']}' ({_fmt(classes)} classes): L {side('left')} | "
                     f"R {side('right')} | ARI R/L {_fmt(r['ari_ratio'])}")
    return "\n".join(lines)


def render_side_by_side(table: pd.DataFrame, truth_levels: pd.DataFrame | None = None) -> str:
    """For a terminal: per scale, one block of stage columns (outcome, then each figure as L, R, R/L).
    At a scale one side has no records for, only the other side's rows are shown (its rows and the
    ratios would be dashes only); the lines under the header name what is missing and how to record it."""
    a = table.attrs
    out = [f"L = {a['left']}, R = {a['right']}, host {a['host_fingerprint']}",
           f"largest scale completed within the limits: L {conversations(a['largest_completed_left'])}, "
           f"R {conversations(a['largest_completed_right'])}", *missing_lines(table)]
    for scale, block in table.groupby("scale", sort=False):
        absent = [label for name, label in (("left", "L"), ("right", "R")) if scale in a.get(f"missing_{name}", ())]
        out.append(f"\n== {scale} conversations =="
                   + "".join(f" ({label} {a['left' if label == 'L' else 'right']}: no records)" for label in absent))
        shown = [(s, label) for s, label in (("left", "L"), ("right", "R"), ("ratio", "R/L"))
                 if label not in absent and not (absent and s == "ratio")]
        index, rows = [], []
        for side, label in shown:
            if side != "ratio":
                index.append(("outcome", label))
                rows.append([_short(v) for v in block[f"outcome_{side}"]])
        for figure in MATRIX_FIGURES:
            for suffix, label in shown:
                index.append((figure, label))
                rows.append([_fmt_figure(figure, suffix, v) for v in block[f"{figure}_{suffix}"]])
        frame = pd.DataFrame(rows, columns=block["stage"].tolist(), index=pd.MultiIndex.from_tuples(index))
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
            out.append(frame.to_string())
        findings = [f"{side}: {stage} {block.loc[i, f'outcome_{side}']}"
                    for i, stage in zip(block.index, block["stage"]) if stage != "total"
                    for side in ("left", "right") if RATE_LIMITED in str(block.loc[i, f"outcome_{side}"])]
        for finding in findings:
            out.append(f"measured finding ({scale}, tier × scale): {finding.replace('left', 'L').replace('right', 'R')}")
        if truth_levels is not None and len(truth_levels):
            per_truth = truth_levels[truth_levels["scale"] == scale]
            if len(per_truth):
                out.append("quality at the topic level of each truth level (latest run):")
                out.append(render_truth_levels(per_truth))
    return "\n".join(out)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


# -- for a terminal ------------------------------------------------------------------------------------
def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """For a terminal: one column per stage, rows status, then each figure as L, R and R/L."""
    rows, index = [], []
    for side in ("left", "right"):
        rows.append(table[f"status_{side}"].tolist())
        index.append(("status", "L" if side == "left" else "R"))
    for figure in FIGURES:
        for suffix, label in (("left", "L"), ("right", "R"), ("ratio", "R/L")):
            rows.append([_fmt_figure(figure, suffix, v) for v in table[f"{figure}_{suffix}"]])
            index.append((figure, label))
    return pd.DataFrame(rows, columns=table["stage"].tolist(), index=pd.MultiIndex.from_tuples(index))


def _fmt(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.4g}"


# Figures shown in human units (a side's value; a ratio stays a plain number): bytes in decimal kB/MB/GB
# (fmt.nbytes, as the report), counts with thousands separators rather than `9.413e+05`.
_HUMAN = {"bytes_written": fmt.nbytes, "api_calls": fmt.integer, "api_429s": fmt.integer,
          "n_clusters": fmt.integer}


def _fmt_figure(figure: str, suffix: str, value: float) -> str:
    show = _HUMAN.get(figure) if suffix != "ratio" else None
    return "-" if pd.isna(value) else (show(value) if show else _fmt(value))
