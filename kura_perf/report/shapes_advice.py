"""Two report tables: what each pipeline shape costs per scale, and the advisor's pick per scale."""

from __future__ import annotations

import pandas as pd

from kura_perf.pipeline.shapes import CUSTOM_STAGE, SHAPES
from kura_perf.report import fmt
from kura_perf.report.advisor import Advice
from kura_perf.report.tables import Cell, Table

SHAPE_ORDER = list(SHAPES)


def shape_totals(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per profile, scale and shape whose every stage has a successful record of that shape:
    the latest record of each stage, summed (peak: the largest). A custom run resumed from checkpoints
    counts the stages its earlier run finished, so the total is the cost of one whole pipeline."""
    if "shape" not in runs or runs.empty:
        return pd.DataFrame()
    ok = runs[(runs["status"] == "success") & runs["shape"].isin(SHAPE_ORDER)]
    rows = []
    for (profile, shape, n), group in ok.groupby(["profile", "shape", "scale_n"]):
        needed = list(SHAPES[shape].stages) + ([CUSTOM_STAGE] if shape == "custom" else [])
        latest = group.sort_values("finished_at").groupby("stage").tail(1).set_index("stage")
        if not set(needed) <= set(latest.index):
            continue
        latest = latest.loc[needed]
        cpu = latest["cpu_user_s"].fillna(0) + latest["cpu_sys_s"].fillna(0)
        rows.append({"profile": profile, "shape": shape, "scale_n": int(n), "stages": len(needed),
                     "wall_s": float(latest["wall_s"].sum()), "cpu_s": float(cpu.sum()),
                     "peak_rss_mb": float(latest["peak_rss_mb"].max()),
                     "bytes": float(latest["bytes_written"].fillna(0).sum()),
                     "cost_usd": float(latest["cost_usd"].fillna(0).sum()),
                     "runs": int(latest["run_id"].nunique())})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    full = df[df["shape"] == "full"].set_index(["profile", "scale_n"])["wall_s"]
    df["vs_full"] = [row.wall_s / full[(row.profile, row.scale_n)] if (row.profile, row.scale_n) in full.index
                     else None for row in df.itertuples()]
    df["order"] = df["shape"].map(SHAPE_ORDER.index)
    return df.sort_values(["profile", "scale_n", "order"]).drop(columns="order").reset_index(drop=True)


def shape_cost_table(totals: pd.DataFrame) -> Table:
    table = Table(["profile", "scale", "shape", "stages", "wall", "CPU", "peak RAM", "storage", "API cost",
                   "wall vs full"],
                  caption="Latest successful record of each stage of the shape, summed (peak RAM: the largest "
                          "stage peak). custom includes the user step; streaming runs with stream_batch_size set.")
    for row in totals.itertuples():
        ratio = "—" if fmt.is_missing(row.vs_full) else f"{row.vs_full:.2f}×"
        table.add(row.profile, fmt.conversations(row.scale_n), Cell(row.shape, "head"), row.stages,
                  Cell(fmt.seconds(row.wall_s), "measured"), fmt.seconds(row.cpu_s), fmt.megabytes(row.peak_rss_mb),
                  fmt.nbytes(row.bytes), fmt.usd(row.cost_usd), ratio)
    return table


BASIS_KIND = {"measured": "measured", "projected": "extrapolated", "interpolated": "interpolated",
              "extrapolated": "extrapolated", "not measured": "unknown", "unknown": "unknown"}


def advisor_table(advice: Advice) -> Table:
    table = Table(["candidate", "time", "API cost", "peak RAM", "ARI", "ARI data", "verdict"],
                  caption=f"At {fmt.conversations(advice.scale_n)} conversations, {advice.limits.describe()}. "
                          "Each figure says whether it was measured at this scale, projected from a run stopped "
                          "at a limit, or interpolated/extrapolated from the fitted scaling curves; ARI only where "
                          "measured at this scale. " + advice.quality_note()
                          + "".join(f" Quality collapse: {w}." for w in advice.quality_warnings()))
    for c in advice.candidates:
        def cell(fig, show):
            return Cell(fig.text(show), BASIS_KIND.get(fig.basis, ""))

        table.add(Cell(c.name, "head"), cell(c.hours, lambda h: fmt.seconds(h * 3600)),
                  cell(c.cost_usd, lambda v: f"${v:,.2f}"), cell(c.ram_gb, fmt.memory_gb),
                  cell(c.ari, lambda v: f"{v:.3f}"), Cell(c.ari_data, "" if c.ari_ranked else "unknown"),
                  Cell(c.verdict, "good" if c.recommended else "" if c.fits else "bad"))
    return table
