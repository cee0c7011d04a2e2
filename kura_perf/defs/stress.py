"""The stress scenarios as assets (group `stress`), one per scenario, beside the pipeline: each runs its
scenario through the core (kura_perf/experiments/stress/) and records its row in stress_results. Not partitioned and
not part of the benchmark job: a stress run disturbs the machine, so it runs only when asked for."""

from typing import Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.experiments.stress import SCENARIOS, Settings, run_scenario

_DEFAULTS = Settings()

DESCRIPTIONS = {
    "memory_exhaustion": "A pipeline under a real OS memory cap (cgroup v2 memory.max, cgroup v1 memory.limit_in_bytes, else RLIMIT_AS).",
    "disk_full": "A pipeline whose data folder is a small filesystem (tmpfs, else RLIMIT_FSIZE).",
    "network_interruption": "The API simulator answers 503 to everything for a while, mid-stage.",
    "rate_limit_storm": "The API simulator at a very low RPM with forced 429s.",
    "concurrent_pipelines": "2-8 pipelines at once on one home, half on one partition, a DuckDB reader attached.",
}


class StressConfig(Config):
    scale: str = _DEFAULTS.scale
    stages: list[str] = list(_DEFAULTS.stages)
    memory_mb: Optional[int] = _DEFAULTS.memory_mb
    disk_kb: int = _DEFAULTS.disk_kb
    outage_s: float = _DEFAULTS.outage_s
    storm_rpm: int = _DEFAULTS.storm_rpm
    storm_429_rate: float = _DEFAULTS.storm_429_rate
    pipelines: int = _DEFAULTS.pipelines
    timeout_s: float = _DEFAULTS.timeout_s


def _metadata(row: dict) -> dict:
    return {
        "outcome": row["outcome"],
        "records": f"{row['records_found']} of {row['records_expected']}",
        "orphans": MetadataValue.int(int(row["orphans"])),
        "wrong_figures": MetadataValue.int(int(row["wrong_figures"])),
        "exit_code": MetadataValue.int(int(row["exit_code"] or 0)),
        "cap_method": row["cap_method"],
        "wall_s": round(float(row["wall_s"]), 1),
        "message": MetadataValue.md(row["message"]),
        "home": MetadataValue.path(row["home"]),
        "record_id": row["record_id"],
    }


def build_stress_asset(scenario: str):
    @asset(name=f"stress_{scenario}", group_name="stress", kinds={"python"}, description=DESCRIPTIONS[scenario])
    def _stress_asset(context: AssetExecutionContext, config: StressConfig,
                      kura_perf: KuraPerfResource) -> MaterializeResult:
        settings = Settings(scale=config.scale, stages=list(config.stages), memory_mb=config.memory_mb,
                            disk_kb=config.disk_kb, outage_s=config.outage_s, storm_rpm=config.storm_rpm,
                            storm_429_rate=config.storm_429_rate, pipelines=config.pipelines,
                            timeout_s=config.timeout_s, profiles_file=kura_perf.settings().profiles_file)
        row = run_scenario(kura_perf.paths(), scenario, settings, run_id=context.run.run_id.replace("-", ""))
        context.log.info(f"stress {scenario}: {row['outcome']}: {row['message']}")
        return MaterializeResult(metadata=_metadata(row))

    return _stress_asset


stress_assets = [build_stress_asset(name) for name in SCENARIOS]
