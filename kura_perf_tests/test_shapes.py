"""Pipeline shapes: each named job materializes the 100 partition and records its shape; the custom
shape resumes after an injected failure without redoing the stages that had completed."""

import pytest
from dagster import AssetKey, DagsterInstance

from kura_perf.defs.jobs import shape_job_name
from kura_perf.defs.launch import run_shape
from kura_perf.errors import ProfileError
from kura_perf.files.outputs import peek_manifest as read_manifest
from kura_perf.pipeline.custom_steps import load_step, redact_text
from kura_perf.pipeline.shapes import CUSTOM_STAGE, SHAPES, ShapeSettings, streaming_supported
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf_tests.shape_steps import FLAG_ENV

pytestmark = pytest.mark.slow

# Cheap on purpose: embeddings from the local simulator (no model load), k-means, PCA.
FAST_PROFILE = """
[fast]
description = "shape tests: simulator embeddings, k-means, PCA"
embedding_model = "openai:text-embedding-3-small"
embedding_dimension = 32
projection = "pca"
clustering = "kmeans"
clustering_params = { clusters_per_group = 10 }
[fast.api]
simulate = true
simulator = { embeddings = { rpm = 100000, tpm = 100000000, latency_ms = 1, p99_ms = 5 } }
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The `fast` profile through the run's settings: the partitions of the definitions the runs use
    come from the same settings, whatever another test module imported before."""
    root = tmp_path_factory.mktemp("shapes")
    profiles = root / "profiles.toml"
    profiles.write_text(FAST_PROFILE)
    settings = RunSettings.from_env(paths=Paths(root / "data"), profiles_file=str(profiles))
    with DagsterInstance.ephemeral() as instance:
        yield settings, instance, root


def _stages(outcome):
    return [r["stage"] for r in outcome.records]


@pytest.mark.parametrize("shape", ["minimal", "full"])
def test_shape_job_materializes_and_records_its_shape(env, shape):
    run_settings, instance, _ = env
    paths = run_settings.paths
    outcome = run_shape(shape, "100", "fast", instance=instance, run_settings=run_settings)
    assert outcome.success, outcome.failure
    assert _stages(outcome) == list(SHAPES[shape].stages)
    assert {r["shape"] for r in outcome.records} == {shape}
    assert all(r["status"] == "success" for r in outcome.records)
    run = instance.get_run_by_id(outcome.run_id)
    assert run.job_name == shape_job_name(shape)  # the full shape's job is benchmark_job
    for stage in SHAPES[shape].stages:
        event = instance.get_latest_materialization_event(AssetKey(stage))
        assert event.run_id == outcome.run_id and event.asset_materialization.metadata["shape"].value == shape
    folder = ShapeSettings(shape).folder(paths, "fast", "100")
    assert (folder == paths.partition_dir("fast", "100")) == (shape == "full")
    assert all(read_manifest(folder, s) for s in SHAPES[shape].stages)
    if shape == "minimal":
        assert read_manifest(folder, "meta_clusters") is None and read_manifest(folder, "projections") is None


def test_streaming_shape_passes_the_batch_size_through(env):
    run_settings, instance, _ = env
    settings = ShapeSettings("streaming", stream_batch_size=40)
    outcome = run_shape("streaming", "100", "fast", instance=instance, settings=settings, run_settings=run_settings)
    if streaming_supported():  # the matrix-streaming work has landed: batched stages, full pipeline
        assert outcome.success, outcome.failure
        assert _stages(outcome) == list(STAGES)
        assert {r["shape"] for r in outcome.records} == {"streaming"}
        plain = run_settings.profile("fast").content_hash()
        assert {r["profile_hash"] for r in outcome.records} == {settings.effective_profile(run_settings.profile("fast"))
                                                                .content_hash()} != {plain}
    else:  # refused with the missing key named, and the failure is recorded with its shape
        assert not outcome.success and "stream_batch_size" in outcome.failure
        assert [(r["stage"], r["status"], r["shape"]) for r in outcome.records] == \
            [("conversations", "failed", "streaming")]


def _mtimes(folder, stages):
    return {s: (folder / f"{s}.manifest.json").stat().st_mtime_ns for s in stages}


def test_custom_shape_resumes_after_a_failure_without_redoing_completed_stages(env, monkeypatch):
    run_settings, instance, root = env
    paths = run_settings.paths
    flag = root / "fail-now"
    flag.touch()
    monkeypatch.setenv(FLAG_ENV, str(flag))
    settings = ShapeSettings("custom", custom_step="kura_perf_tests.shape_steps:flaky_redact", custom_after="summaries")
    folder = settings.folder(paths, "fast", "100")

    first = run_shape("custom", "100", "fast", instance=instance, settings=settings, run_settings=run_settings)
    assert not first.success and "injected failure" in first.failure
    assert [(r["stage"], r["status"]) for r in first.records] == \
        [("conversations", "success"), ("summaries", "success"), (CUSTOM_STAGE, "failed")]
    done = _mtimes(folder, ["conversations", "summaries"])
    assert read_manifest(folder, "summaries")["checkpoint"]["custom_step"] is None  # not yet transformed
    assert read_manifest(folder, "embeddings") is None

    flag.unlink()
    second = run_shape("custom", "100", "fast", instance=instance, settings=settings, run_settings=run_settings)
    assert second.success, second.failure
    assert _stages(second) == [CUSTOM_STAGE, *STAGES[2:]]  # conversations and summaries were not redone
    assert {r["shape"] for r in second.records} == {"custom"}
    assert _mtimes(folder, ["conversations"]) == {"conversations": done["conversations"]}
    step = next(r for r in second.records if r["stage"] == CUSTOM_STAGE)
    assert step["items_in"] == step["items_out"] == 100 and step["backend"] == "custom"
    summaries = read_manifest(folder, "summaries")["checkpoint"]
    assert summaries["custom_step"] == settings.custom_step
    assert read_manifest(folder, "embeddings")["checkpoint"]["inputs"] == {"summaries": summaries["nonce"]}

    after_second = _mtimes(folder, STAGES)
    third = run_shape("custom", "100", "fast", instance=instance, settings=settings, run_settings=run_settings)
    assert third.success and third.records == []  # every stage reused its checkpoint
    assert _mtimes(folder, STAGES) == after_second
    materialized = instance.get_latest_materialization_event(AssetKey("clusters"))
    assert materialized.run_id == third.run_id and "clusters" in materialized.asset_materialization.metadata["resumed"].value


def test_redaction_masks_pii_and_keeps_rows():
    text, n = redact_text("mail jane.doe@example.com or call +1 (555) 123-4567, see https://x.io/a and 10.0.0.1")
    assert n == 4 and "[EMAIL]" in text and "[PHONE]" in text and "[URL]" in text and "[IP]" in text
    assert "example.com" not in text and "555" not in text


def test_bad_custom_steps_are_refused_with_the_setting_named(env):
    run_settings, instance, _ = env
    with pytest.raises(ProfileError, match="no attribute 'nope'"):
        load_step("kura_perf.pipeline.custom_steps:nope")
    with pytest.raises(ProfileError, match="cannot import module"):
        load_step("no_such_module_xyz:f")
    with pytest.raises(ProfileError, match="custom_after"):
        ShapeSettings("custom", custom_after="projections")
    with pytest.raises(ProfileError, match="module:function"):
        ShapeSettings("custom", custom_step="nocolon").effective_profile(run_settings.profile("fast"))
    settings = ShapeSettings("custom", custom_step="kura_perf_tests.shape_steps:drops_a_table")
    outcome = run_shape("custom", "100", "fast", instance=instance, settings=settings, run_settings=run_settings)
    assert not outcome.success and "changed the output's parts" in outcome.failure



def test_one_job_per_shape_and_no_duplicates(env):
    """The full shape's job is the benchmark job (no full_pipeline beside it): one job per shape, the report,
    and the cluster jobs, which select the same stage assets on the Celery executor."""
    from kura_perf.defs.build import build_definitions

    run_settings, _, _ = env
    jobs = {job.name: job for job in build_definitions(run_settings).get_repository_def().get_all_jobs()
            if not job.name.startswith("__")}
    in_process = {name for name, job in jobs.items() if job.executor_def.name == "in_process"}
    assert in_process == {"benchmark_job", "minimal_pipeline", "custom_pipeline", "streaming_pipeline", "report_job",
                          "kura_versions_job"}  # the nightly Kura-versions comparison (its own job, not a shape)
    assert set(jobs) - in_process <= {"cluster_embeddings", "cluster_pipeline"}


def test_shape_options_are_typed_config_checked_before_the_run(env):
    """The options are the typed `pipeline_shape` resource config: a wrong type is refused by Dagster
    before any step runs; the shape itself is the job's."""
    from dagster import DagsterInvalidConfigError

    from kura_perf.defs.build import build_definitions
    from kura_perf.defs.config import PipelineShape, job_shape, shape_run_config
    from kura_perf.defs.partitions import partition_key

    run_settings, instance, _ = env
    defs = build_definitions(run_settings)
    job = defs.resolve_job_def(shape_job_name("streaming"))
    with pytest.raises(DagsterInvalidConfigError, match="stream_batch_size"):
        job.execute_in_process(partition_key=partition_key("100", "fast"), instance=instance, resources=defs.resources,
                               run_config={"resources": {"pipeline_shape": {"config": {"stream_batch_size": "forty"}}}})
    assert shape_run_config(ShapeSettings("streaming", stream_batch_size=40)) == \
        {"resources": {"pipeline_shape": {"config": {"stream_batch_size": 40}}}}
    assert [job_shape(shape_job_name(s)) for s in SHAPES] == list(SHAPES) and job_shape("__ASSET_JOB") is None
    with pytest.raises(ProfileError, match="custom_after"):
        PipelineShape(custom_after="projections").settings(shape_job_name("custom"))
