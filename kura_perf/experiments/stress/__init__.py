"""Stress scenarios (proposal §4.3) as a product feature: `kura-perf stress` and the Dagster `stress` group.

Each scenario runs real pipelines under a real fault in a scratch home (<data root>/stress/<run>/<scenario>/)
and records one row in the store's `stress_results` table: survived, failed_cleanly or lost_data, with the
records expected and found, orphan temp files, partial outputs and wrong figures behind the verdict.
No Dagster here: the CLI and the assets both call `run_stress`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from kura_perf.errors import KuraPerfError
from kura_perf.experiments.stress.outcome import FAILED_CLEANLY, LOST_DATA, OUTCOMES, SURVIVED
from kura_perf.experiments.stress.scenarios import SCENARIOS, Context, Settings
from kura_perf.meter.host import code_version, host_info, package_versions
from kura_perf.settings.paths import Paths
from kura_perf.stages.base import STAGES
from kura_perf.store import new_record_id, write_record

__all__ = ["SCENARIOS", "Settings", "run_stress", "run_scenario", "OUTCOMES", "SURVIVED", "FAILED_CLEANLY",
           "LOST_DATA"]

log = logging.getLogger("kura_perf.experiments.stress")


def _comparability(run_id: str) -> dict:
    import json

    versions = package_versions()
    return {"run_id": run_id, "code_version": code_version(), "package_versions": json.dumps(versions, sort_keys=True),
            "kura_version": versions.get("kura"), **host_info()}


def run_scenario(paths: Paths, name: str, settings: Settings, run_id: str | None = None) -> dict:
    """Run one scenario, record its row in stress_results, return the row."""

    if name not in SCENARIOS:
        raise KuraPerfError(f"unknown stress scenario '{name}'; expected some of {', '.join(SCENARIOS)}")
    run_id = run_id or uuid.uuid4().hex
    ctx = Context(root=Path(paths.root) / "stress" / run_id, run_id=run_id, settings=settings)
    log.info("stress %s: starting (%s)", name, ctx.root / name)
    row = {"record_id": new_record_id(), **SCENARIOS[name](ctx), **_comparability(run_id)}
    write_record(paths.metrics, "stress_results", row)
    log.info("stress %s: %s (%s)", name, row["outcome"], row["message"][:200])
    return row


def run_stress(paths: Paths, names: list[str] | None = None, settings: Settings | None = None) -> list[dict]:
    """Run the named scenarios (default: all) one after another under one stress run id."""
    names = list(names or SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise KuraPerfError(f"unknown stress scenario(s) {unknown}; expected some of {', '.join(SCENARIOS)}")
    settings = settings or Settings()

    unknown_stages = sorted(set(settings.stages) - set(STAGES))
    if unknown_stages:
        raise KuraPerfError(f"unknown stage(s) {unknown_stages}; expected some of {', '.join(STAGES)}")
    if not 2 <= settings.pipelines <= 8:
        raise KuraPerfError(f"--pipelines must be 2..8 (got {settings.pipelines})")
    run_id = uuid.uuid4().hex
    return [run_scenario(paths, name, settings, run_id) for name in names]
