"""Asset checks on every stage asset, per partition: regression, budgets, sanity (blocking) and,
on clusters and meta_clusters, quality. One multi-check per stage, so a stage's record is looked up once; each check
can still be run on its own from the UI (can_subset).

The logic is in kura_perf.checks (no Dagster there); this module maps outcomes to Dagster results:
failed regression and quality are ERROR (red, not blocking), budgets WARN unless the profile sets
budgets_blocking, sanity ERROR and blocking, so later stages never run on bad data.
"""

import math
import warnings

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    MultiPartitionsDefinition,
    PreviewWarning,
    TableColumn,
    TableRecord,
    TableSchema,
    multi_asset_check,
)

from kura_perf.checks.evaluate import evaluate_stage, groups_for
from kura_perf.checks.outcome import ERROR, CheckOutcome
from kura_perf.checks.records import find_stage_record
from kura_perf.defs.config import PipelineShape
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.pipeline.checkpoints import producer_run
from kura_perf.scales import SCALES
from kura_perf.stages.base import STAGES

DESCRIPTIONS = {
    "regression": "Work time (wall without numba compile and first import) and peak RSS vs the history of this stage/scale/profile/host (or a pinned run), and "
                  "on clusters and meta_clusters the topic-level ARI (finest truth level; without truth: "
                  "silhouette): fails only when over the profile's threshold AND beyond the measured noise.",
    "budgets": "Proposal budgets: peak memory per scale, storage per conversation; cluster counts against the "
               "ground truth's class count (base level >= 0.5x, topic level 0.5x-2x), or §1.2's guesses "
               "shown for information when there is no truth.",
    "sanity": "Stored output is consistent (ids, counts, finite values, hierarchy is a tree). Blocking.",
    "quality": "Against the profile's minimums, each at a named level: on clusters, silhouette of the base "
               "clusters (min_silhouette; ARI and homogeneity reported); on meta_clusters, ARI at the level "
               "nearest the true topic count (min_ari).",
}


def partition_of(context: AssetCheckExecutionContext) -> tuple[str, str]:
    """(profile, scale) of the check's partition; from the run tags if the check is not partitioned."""
    if context.has_partition_key:
        keys = context.partition_key.keys_by_dimension
        return keys["profile"], keys["scale"]
    tags = context.run.tags
    return tags["dagster/partition/profile"], tags["dagster/partition/scale"]


# The unit of each check's value, for the details table and the summary line.
UNITS = {"regression_stage_work_s": "s", "regression_peak_rss_mb": "MB", "regression_ari": "ARI",
         "regression_silhouette": "silhouette",
         "budget_memory": "MB", "budget_storage": "KB per conversation", "budget_clusters": "clusters",
         "sanity": "problems"}


def unit_of(name: str) -> str:
    return UNITS.get(name, "score" if name.startswith("quality_") else "")


def _figure(value, unit: str) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    shown = f"{value:,.4g}" if math.isfinite(value) else str(value)
    return f"{shown} {unit}".strip()


def summary_line(o: CheckOutcome) -> str:
    """One outcome in words with units: value, baseline or budget, ratio, band, history."""
    unit = unit_of(o.name)
    parts = [f"{'passed' if o.passed else 'FAILED'}: {_figure(o.value, unit)}"]
    if o.baseline is not None:
        parts.append(f"vs {_figure(o.baseline, unit)}")
    if o.ratio is not None and math.isfinite(float(o.ratio)):
        parts.append(f"(x{float(o.ratio):.3g})")
    if o.noise_low is not None or o.noise_high is not None:
        parts.append(f"band {_band(o.noise_low, o.noise_high)}")
    if o.samples is not None:
        parts.append(f"over {int(o.samples)} earlier run(s)")
    parts += [f"{key} {value}" for key, value in o.details.items()]
    return " ".join(parts)


def outcome_metadata(outcomes: list[CheckOutcome]) -> dict:
    """Per outcome a line of text with units (prefixed by the outcome when a check has several), plus
    the typed details table. No bare numbers: Dagster plots a check's numeric metadata over its
    evaluations, which put a 100-conversation run and a 100K one in one series without units."""
    meta: dict = {}
    for o in outcomes:
        key = o.name if len(outcomes) > 1 else "result"
        meta[key] = MetadataValue.text(summary_line(o))
    meta["details"] = MetadataValue.table([TableRecord({
        "check": o.name, "passed": bool(o.passed), "value": _cell(o.value), "baseline": _cell(o.baseline),
        "unit": unit_of(o.name), "ratio": _cell(o.ratio), "noise_band": _band(o.noise_low, o.noise_high),
        "samples": None if o.samples is None else int(o.samples), "message": o.message}) for o in outcomes],
        schema=DETAILS_SCHEMA)
    return meta


DETAILS_SCHEMA = TableSchema(columns=[
    TableColumn("check", "string"), TableColumn("passed", "bool"), TableColumn("value", "float"),
    TableColumn("baseline", "float", description="the baseline (history or pinned run) or the budget"),
    TableColumn("unit", "string"), TableColumn("ratio", "float", description="value / baseline"),
    TableColumn("noise_band", "string", description="the band the value may move in (measured noise or a budget)"),
    TableColumn("samples", "int", description="history runs the baseline is built from"),
    TableColumn("message", "string")])


def _band(low, high) -> str:
    """The band as text; one-sided (a minimum only, e.g. base clusters >= 0.5x the true classes) allowed."""
    if low is None and high is None:
        return ""
    if high is None:
        return f">= {low:.3g}"
    if low is None:
        return f"<= {high:.3g}"
    return f"{low:.3g}–{high:.3g}"


def _cell(value) -> float | None:
    """A number for a table cell (4 significant digits); inf/NaN as empty."""
    if value is None:
        return None
    value = float(value)
    return float(f"{value:.4g}") if math.isfinite(value) else None


def to_result(stage: str, group: str, outcomes: list[CheckOutcome]) -> AssetCheckResult:
    failed = [o for o in outcomes if not o.passed]
    severity = AssetCheckSeverity.ERROR if any(o.severity == ERROR for o in failed or outcomes) \
        else AssetCheckSeverity.WARN
    message = "; ".join(o.message for o in (failed or outcomes))
    return AssetCheckResult(asset_key=stage, check_name=group, passed=not failed, severity=severity,
                            description=message[:2000], metadata=outcome_metadata(outcomes))


def build_stage_checks(stage: str, partitions: MultiPartitionsDefinition) -> AssetChecksDefinition:
    with warnings.catch_warnings():
        # Only this one: a partitions_def on an AssetCheckSpec is a Dagster preview feature (1.13), and the
        # checks must be per partition (one record per scale x profile); any other warning still shows.
        warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec")
        specs = [AssetCheckSpec(group, asset=stage, blocking=group == "sanity", description=DESCRIPTIONS[group],
                                partitions_def=partitions) for group in groups_for(stage)]

    @multi_asset_check(name=f"{stage}_checks", specs=specs, can_subset=True,
                       description=f"Checks on the {stage} stage's record and stored output.")
    def _checks(context: AssetCheckExecutionContext, kura_perf: KuraPerfResource, pipeline_shape: PipelineShape):
        profile_name, scale = partition_of(context)
        selected = [k.name for k in context.selected_asset_check_keys]
        groups = tuple(g for g in groups_for(stage) if g in selected)
        paths, run_id = kura_perf.paths(), context.run.run_id
        settings = pipeline_shape.settings(context.job_def.name)  # the run's shape
        folder = settings.folder(paths, profile_name, scale)
        record = find_stage_record(paths, run_id, stage)
        producer = producer_run(folder, stage)
        if record is None and producer:  # a resumed stage: check the record of the run that produced it
            record = find_stage_record(paths, producer, stage)
        if record is None:
            record = find_stage_record(paths, run_id, stage, profile_name, scale)
        if record is None:
            for group in groups:
                yield AssetCheckResult(asset_key=stage, check_name=group, passed=False,
                                       severity=AssetCheckSeverity.WARN,
                                       description=f"no {stage} record for run {run_id} or for "
                                                   f"{profile_name}|{scale}: materialize the stage first")
            return
        if record.run_id != run_id:
            context.log.info(f"{stage}: checking the latest record, from run {record.run_id}")
        if record.scale_n is None:
            record = record.replace(scale_n=SCALES.get(scale))
        profile = settings.effective_profile(kura_perf.profile(profile_name))
        results = evaluate_stage(paths, record, profile, groups, folder=folder)
        for group, outcomes in results.items():
            yield to_result(stage, group, outcomes)

    return _checks


def build_all_stage_checks(partitions: MultiPartitionsDefinition) -> list[AssetChecksDefinition]:
    return [build_stage_checks(stage, partitions) for stage in STAGES]
