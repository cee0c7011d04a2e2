"""The pipeline through Dagster: materialize the 100 partition end to end and check what it recorded."""

import subprocess

import pytest
from dagster import DagsterInstance

from kura_perf.defs.launch import run_partition
from kura_perf.files.outputs import read_stage
from kura_perf.settings.paths import Paths
from kura_perf.stages.base import STAGES
from kura_perf.store import query

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pca_100")]


@pytest.fixture
def offline_100(pca_100):
    """The session's six-stage pca|100 run (conftest.py), shared with test_defs_checks and test_kura_backend."""
    return pca_100.paths, pca_100.outcome, pca_100.materializations


def test_every_stage_succeeds_and_is_recorded(offline_100):
    paths, outcome, _ = offline_100
    assert outcome.success, outcome.failure
    records = {r["stage"]: r for r in outcome.records}
    assert list(records) == list(STAGES)
    for rec in records.values():
        assert rec["status"] == "success"
        assert rec["run_id"] == outcome.run_id
        assert (rec["profile"], rec["scale"], rec["scale_n"]) == ("pca", "100", 100)
        assert rec["wall_s"] > 0 and rec["peak_rss_mb"] >= rec["rss_start_mb"] * 0.99
        assert rec["host_fingerprint"] and rec["code_version"] and rec["profile_hash"]
        assert len(rec["mem_timeline_mb"]) >= 1
    assert records["conversations"]["items_out"] == 100
    assert records["summaries"]["items_out"] == 100
    assert records["embeddings"]["items_out"] == 100
    assert records["clusters"]["items_in"] == 100
    assert records["clusters"]["ari"] is not None  # synthetic data carries ground truth


def test_outputs_are_complete_and_sizes_match_du(offline_100):
    paths, outcome, _ = offline_100
    folder = paths.partition_dir("pca", "100")
    embeddings = read_stage(folder, "embeddings").arrays["main"]
    assert embeddings.shape == (100, 384)
    projections = read_stage(folder, "projections").tables["main"]
    assert len(projections) == 100 and projections[["x", "y"]].notna().all().all()
    records = {r["stage"]: r for r in outcome.records}
    for stage in STAGES:
        files = [p for p in folder.glob(f"{stage}.*") if not p.name.endswith(".manifest.json")
                 and p.name.split(".")[0] == stage]
        du = subprocess.run(["du", "-cb", *map(str, files)], capture_output=True, text=True, check=True)
        total = int(du.stdout.strip().splitlines()[-1].split()[0])
        assert records[stage]["bytes_written"] == total, stage
    assert not list(folder.glob(".*.tmp"))


def test_materializations_carry_the_key_figures(offline_100):
    _, outcome, materializations = offline_100
    for stage, event in materializations.items():
        assert event is not None, stage
        meta = event.asset_materialization.metadata
        for key in ("rows", "wall_s", "peak_rss_mb", "written_mb", "record_id"):
            assert key in meta, (stage, key)
        record = next(r for r in outcome.records if r["stage"] == stage)
        assert meta["written_mb"].value == pytest.approx(record["bytes_written"] / 1e6, abs=1e-3), stage
        # wall time split into the work and what was not (numba compile, first import), as the record has it
        for key in ("stage_work_s", "jit_compile_s", "startup_s"):
            if record.get(key) is not None:
                assert meta[key].value == pytest.approx(record[key], abs=1e-3), (stage, key)
    clusters = next(r for r in outcome.records if r["stage"] == "clusters")
    assert clusters["stage_work_s"] is not None and "stage_work_s" in materializations["clusters"].asset_materialization.metadata
    # Quality per level (a markdown table plus the topic level's figures) on clusters and meta_clusters.
    for stage in ("clusters", "meta_clusters"):
        meta = materializations[stage].asset_materialization.metadata
        assert "quality_levels" in meta and "topic_level" in meta and "topic_level_ari" in meta, stage


def test_store_views_answer_for_the_run(offline_100):
    paths, outcome, _ = offline_100
    summary = query(paths.metrics, "SELECT * FROM run_summary WHERE run_id = ?", [outcome.run_id])
    assert summary["stages_ok"][0] == len(STAGES)
    scaling = query(paths.metrics, "SELECT stage, bytes_per_conversation FROM scaling")
    assert set(scaling["stage"]) == set(STAGES)


def test_a_failing_stage_is_recorded_with_its_error(kp_home, tmp_path):
    profiles = tmp_path / "profiles.toml"
    missing = tmp_path / "no-such-file.jsonl"
    profiles.write_text(f'[from-file]\ndata_file = "{missing}"\n')
    paths = Paths.from_env()
    # Through the runner, as the asset runs it, with the profile from the run's settings.
    from kura_perf.pipeline.runner import StageRun, run_stage
    from kura_perf.settings.run import RunSettings

    settings = RunSettings.from_env(paths=paths, profiles_file=str(profiles))
    run = StageRun("conversations", settings.profile("from-file"), "100", settings=settings)
    with pytest.raises(Exception) as info:
        run_stage(run)
    assert "no-such-file.jsonl" in str(info.value)
    rows = query(paths.metrics, "SELECT status, error_type, error_message, wall_s FROM stage_runs")
    assert rows["status"].tolist() == ["failed"]  # written by the run itself, no hook involved
    assert "no-such-file.jsonl" in rows["error_message"][0]
    assert rows["error_type"][0] == type(info.value).__name__
    assert not paths.partition_dir("from-file", "100").joinpath("conversations.manifest.json").exists()


def test_failure_inside_dagster_is_recorded_by_the_hook(kp_home, monkeypatch):
    """Downstream of a missing input: the stage fails in Dagster and the failure hook records it."""
    paths = Paths.from_env()
    with DagsterInstance.ephemeral() as instance:
        outcome = run_partition("100", "offline", stages=["summaries"], paths=paths, instance=instance)
    assert not outcome.success
    assert "materialize it first" in outcome.failure
    rows = query(paths.metrics, "SELECT stage, status, error_message FROM stage_runs")
    assert rows.to_dict("records") == [{"stage": "summaries", "status": "failed",
                                        "error_message": rows["error_message"][0]}]
    assert "conversations" in rows["error_message"][0]


@pytest.mark.parametrize("limits, reason", [
    ({"stage_timeout_s": 0.2}, "time limit"),
    ({"memory_limit_mb": 64}, "memory limit"),
])
def test_guards_record_a_breaking_point(kp_home, limits, reason):
    from kura_perf.checks.records import stored_record
    from kura_perf.errors import BreakingPoint
    from kura_perf.pipeline.runner import StageRun, run_stage
    from kura_perf.profiles import Profile
    from kura_perf.settings.run import RunSettings

    paths = Paths.from_env()
    run = StageRun("conversations", Profile(name="guarded", **limits), "100k", settings=RunSettings.from_env(paths=paths))
    with pytest.raises(BreakingPoint, match=reason):
        run_stage(run)
    record = stored_record(paths, run.run_id, "conversations")
    assert record.status == "breaking_point"
    assert reason in record.error_message
    assert record.peak_rss_mb > 0 and record.scale_n == 100_000
    rows = query(paths.metrics, "SELECT stage, scale, status FROM breaking_points")
    assert rows.to_dict("records") == [{"stage": "conversations", "scale": "100k", "status": "breaking_point"}]
    assert not paths.partition_dir("guarded", "100k").joinpath("conversations.manifest.json").exists()
