"""Two pipelines side by side at one scale (`kura-perf compare --scale 10k reference:offline kura:kura`):
per stage and in total, wall time, peak memory, storage, API calls, 429s, cost and quality, with the
right/left ratio of each. Reads the store's `comparison` view (latest record per stage, any status).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.stages.base import STAGES

FIGURES = ("wall_s", "peak_rss_mb", "bytes_written", "api_calls", "api_429s", "cost_usd", "ari", "nmi")
BACKENDS = ("reference", "kura")


def parse_side(side: str) -> tuple[str, str]:
    backend, sep, profile = side.partition(":")
    if not sep or backend not in BACKENDS or not profile:
        raise KuraPerfError(f"'{side}': expected backend:profile with backend one of {', '.join(BACKENDS)} "
                            f"(e.g. reference:offline or kura:kura)")
    return backend, profile


def _side_rows(view: pd.DataFrame, side: str, scale: str, host: str | None) -> pd.DataFrame:
    backend, profile = parse_side(side)
    rows = view[(view["backend"] == backend) & (view["profile"] == profile) & (view["scale"] == scale)]
    if host is not None:
        rows = rows[rows["host_fingerprint"] == host]
    if not len(rows):
        raise KuraPerfError(f"no records for {side} at scale {scale}"
                            f"{' on host ' + host if host else ''}: run `kura-perf run --scale {scale} "
                            f"--profile {profile}` first")
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
    from kura_perf.store import query

    view = query(Path(metrics_dir), "SELECT * FROM comparison WHERE scale = ?", [scale])
    left_rows, right_rows = _side_rows(view, left, scale, host), _side_rows(view, right, scale, host)
    if host is None:
        shared = set(left_rows["host_fingerprint"]) & set(right_rows["host_fingerprint"])
        if not shared:
            raise KuraPerfError(f"{left} and {right} at scale {scale} were never measured on the same host; "
                                f"pass host= to pick one, knowing the ratios then mix machines")
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


# -- CLI -----------------------------------------------------------------------------------------------
def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """For a terminal: one column per stage, rows status, then each figure as L, R and R/L."""
    rows, index = [], []
    for side in ("left", "right"):
        rows.append(table[f"status_{side}"].tolist())
        index.append(("status", "L" if side == "left" else "R"))
    for figure in FIGURES:
        for suffix, label in (("left", "L"), ("right", "R"), ("ratio", "R/L")):
            rows.append([_fmt(v) for v in table[f"{figure}_{suffix}"]])
            index.append((figure, label))
    return pd.DataFrame(rows, columns=table["stage"].tolist(), index=pd.MultiIndex.from_tuples(index))


def _fmt(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.4g}"


def cmd_compare(args) -> int:
    from kura_perf.config import Paths

    table = compare_partitions(Paths.from_env().metrics, args.scale, args.left, args.right, host=args.host)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(table.to_json(orient="records"))
    else:
        print(f"L = {args.left}, R = {args.right}, scale {args.scale}, host {table.attrs['host_fingerprint']}")
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(display_table(table).to_string())
    return 0


def add_compare_command(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser("compare", help="two pipelines side by side at one scale, with ratios")
    compare.add_argument("left", help="backend:profile, e.g. reference:offline")
    compare.add_argument("right", help="backend:profile, e.g. kura:kura")
    compare.add_argument("--scale", default="1k", help="100, 1k, 5k, 10k, 50k or 100k")
    compare.add_argument("--host", help="host fingerprint (default: the latest both sides were measured on)")
    compare.add_argument("--format", choices=["table", "csv", "json"], default="table")
    compare.set_defaults(func=cmd_compare)
