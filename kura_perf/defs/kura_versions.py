"""Nightly for Kura (issue 21): a Kura spec, e.g. the checkout a CI job runs in, against Kura's last
release at 1K with kura-tier5, failing on a regression. The work is kura_perf/experiments/versions.py
(each spec in its own cached environment, the partition run there by `kura-perf run`); this module is
only its Dagster face: one op, its job and a schedule that runs when RunSettings.nightly_kura
($KURA_PERF_NIGHTLY_KURA) names specs, and skips (saying why) when it does not.
"""


from typing import Optional

from dagster import (
    Config,
    DefaultScheduleStatus,
    Failure,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.settings.environment import NIGHTLY_KURA_ENV

BASELINE = "kura"  # the last release on the package index, resolved each night
NIGHTLY_SCALE, NIGHTLY_PROFILE = "1k", "kura-tier5"


class KuraVersionsConfig(Config):
    specs: list[str]  # the baseline first
    scale: str = NIGHTLY_SCALE
    profile: str = NIGHTLY_PROFILE
    stages: Optional[list[str]] = None  # None: all stages


def nightly_specs(value: str | None) -> list[str]:
    """The specs of $KURA_PERF_NIGHTLY_KURA ("spec,spec"), each checked for its syntax, after the baseline."""
    from kura_perf.kura_envs.spec import parse_spec

    specs = [part.strip() for part in (value or "").split(",") if part.strip()]
    for text in specs:
        parse_spec(text)
    return [BASELINE, *specs] if specs else []


@op(description="Kura specs side by side on one partition (kura-perf versions); fails on a regression "
                "of a later spec against the first.")
def kura_versions_op(context: OpExecutionContext, config: KuraVersionsConfig, kura_perf: KuraPerfResource) -> None:
    from kura_perf.experiments import versions

    settings = kura_perf.settings()
    prepared = versions.prepare(config.specs, settings.paths.root)
    runs = versions.run_specs(prepared, config.scale, config.profile, config.stages,
                              profiles_file=settings.profiles_file)
    table = versions.side_by_side(settings, runs)
    context.log.info("Kura versions at %s, %s:\n%s", config.scale, config.profile, table.to_string(index=False))
    failed = [f"{run.text}: {'; '.join(run.failures)}" for run in runs if run.failures]
    worse = versions.regressions(table)
    if failed or worse:
        raise Failure(description="; ".join([*failed, *(f"regression {line}" for line in worse)]))


@job(description="Kura specs side by side (the nightly for Kura: a checkout against the last release).")
def kura_versions_job():
    kura_versions_op()


def build_kura_nightly_schedule(value: str | None):
    specs = nightly_specs(value)  # a malformed spec fails where the definitions load, naming it

    @schedule(cron_schedule="0 3 * * *", execution_timezone="UTC", job=kura_versions_job, name="nightly_kura_versions",
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Nightly: the Kura specs in ${NIGHTLY_KURA_ENV} against the last release, "
                          f"{NIGHTLY_PROFILE} at {NIGHTLY_SCALE}; skipped when it is unset.")
    def nightly_kura_versions(context: ScheduleEvaluationContext):
        if not specs:
            return SkipReason(f"${NIGHTLY_KURA_ENV} names no Kura spec")
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return RunRequest(run_key=f"nightly-kura-{day}",
                          run_config={"ops": {"kura_versions_op": {"config": {"specs": specs}}}},
                          tags={"kura_perf/trigger": "nightly", "kura_perf/night": day})

    return nightly_kura_versions
