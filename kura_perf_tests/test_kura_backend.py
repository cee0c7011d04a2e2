"""The kura backend: the real Kura package runs the 100 partition through Dagster against the simulator,
stores what the reference stores, is counted from the simulator's log, compares with the reference;
plus the refusal without the extra, the conversions and the time limits."""

import asyncio
import json
import sys
import time
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from kura_perf.backends.kura_api_log import counters_between
from kura_perf.backends.kura_loop import KuraLoop
from kura_perf.corpus import generate_conversations
from kura_perf.errors import BreakingPoint, ProfileError
from kura_perf.files.outputs import read_stage
from kura_perf.meter import Meter
from kura_perf.profiles import get_profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf.store import query

INSTALL_HINT = "pip install 'kura_perf[kura]'"
SPEED_FACTOR = 100.0  # the simulator 100x faster than the published models: a scaled, quick test run


# -- the 100 partition, end to end -------------------------------------------------------------------
@pytest.fixture(scope="module")
def kura_100(tmp_path_factory, pca_100):
    """Kura's 100 partition against a simulator we own (so its log can be read), in a copy of the data
    root of the session's pca|100 reference run (conftest.py), so both sides are in one store."""
    import shutil

    from kura_perf.backends.model_factory import SIMULATOR_URL_ENV
    from kura_perf.defs.launch import run_partition
    from kura_perf.simulator.config import SimulatorConfig
    from kura_perf.simulator.process import SimulatorProcess

    root = tmp_path_factory.mktemp("kura")
    shutil.copytree(pca_100.paths.root, root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("KURA_PERF_HOME", str(root / "data"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    paths = Paths.from_env()
    # The profile's limits and published per-model latency, 100x faster so the test stays quick: the
    # records then carry sim_speed_factor 100 (scaled, not a prediction).
    config = SimulatorConfig.from_dict({**get_profile("kura").api.simulator, "speed_factor": SPEED_FACTOR})
    with SimulatorProcess(config) as sim:
        mp.setenv(SIMULATOR_URL_ENV, sim.base_url)  # the Dagster resource then reuses this simulator
        with DagsterInstance.ephemeral() as instance:
            kura = run_partition("100", "kura", paths=paths, instance=instance)
            log = sim.log()
    walls = ", ".join(f"{r['stage']} {r['wall_s']:.1f}" for r in kura.records)
    print(f"\nkura 100: {walls}")
    yield paths, kura, pca_100.outcome, log
    mp.undo()


slow = pytest.mark.slow
pytestmark = pytest.mark.xdist_group("pca_100")  # the session's pca|100 run: one worker runs it


@slow
def test_every_stage_succeeds_and_records_the_kura_version(kura_100):
    _, outcome, _, _ = kura_100
    assert outcome.success, outcome.failure
    records = {r["stage"]: r for r in outcome.records}
    assert list(records) == list(STAGES)
    for stage, rec in records.items():
        assert rec["status"] == "success", stage
        assert (rec["backend"], rec["profile"], rec["scale_n"]) == ("kura", "kura", 100)
        assert rec["kura_version"] == metadata.version("kura"), stage
        assert json.loads(rec["extra"])["kura_version"] == metadata.version("kura")
        assert rec["sim_speed_factor"] == SPEED_FACTOR, stage  # scaled: the report labels its times so
    assert records["clusters"]["n_clusters"] == 10  # Kura's k-means default: ceil(100 / 10)
    assert records["clusters"]["ari"] is not None  # quality against ground truth, as for the reference


@slow
def test_api_counts_are_the_simulator_logs(kura_100):
    _, outcome, _, log = kura_100
    records = {r["stage"]: r for r in outcome.records}
    api = {s: int(records[s]["api_calls"]) for s in STAGES if not _missing(records[s]["api_calls"])}
    assert set(api) == {"summaries", "clusters", "meta_clusters"}  # MiniLM and UMAP are local
    assert api["summaries"] == 100  # one per conversation, nothing retried
    assert api["clusters"] == 10  # one description per cluster
    assert api["meta_clusters"] == 0  # 10 clusters is already within max_clusters
    assert sum(api.values()) == log["requests"]
    tokens = sum(int(records[s]["tokens_in"]) + int(records[s]["tokens_out"]) for s in api)
    assert tokens == sum(e["total_tokens"] for e in log["entries"])
    assert records["summaries"]["cost_usd"] > 0 and records["summaries"]["api_429s"] == 0
    # Kura reports no progress; the backend reads it off the simulator's log (so a stopped stage is projected)
    assert (records["summaries"]["items_done"], records["summaries"]["items_total"]) == (100, 100)


@slow
def test_outputs_have_the_reference_layout_and_keep_ids(kura_100):
    paths, *_ = kura_100
    kura, ref = paths.partition_dir("kura", "100"), paths.partition_dir("pca", "100")
    conversations = read_stage(kura, "conversations").tables["main"]
    ids = conversations["chat_id"].tolist()
    for stage in STAGES:
        k_data, r_data = read_stage(kura, stage), read_stage(ref, stage)
        # The reference's umap-hdbscan also stores its k-NN graph (for the projection to reuse) and its
        # clusters' centroids (what its meta-clustering groups by); Kura has neither.
        reference_arrays = set(r_data.arrays) - {"knn_indices", "knn_distances", "centroids"}
        assert set(k_data.tables) == set(r_data.tables) and set(k_data.arrays) == reference_arrays, stage
        for key, table in r_data.tables.items():
            mine = k_data.tables[key]
            assert set(table.columns) <= set(mine.columns), (stage, key)
            for column in table.columns:  # numbers typed alike (an empty reference table tells nothing)
                if len(table) and pd.api.types.is_numeric_dtype(table[column]):
                    assert mine[column].dtype == table[column].dtype, (stage, key, column)
    vectors = read_stage(kura, "embeddings").arrays["main"]
    assert vectors.dtype == np.float32 and vectors.shape == (100, 384)
    summaries = read_stage(kura, "summaries").tables["main"]
    assert summaries["chat_id"].tolist() == ids
    assert read_stage(kura, "embeddings").tables["ids"]["chat_id"].tolist() == ids
    assert read_stage(kura, "clusters").tables["assignments"]["chat_id"].tolist() == ids
    assert read_stage(kura, "projections").tables["main"]["chat_id"].tolist() == ids
    # Kura embeds str(summary), chat_id and metadata included; the ground truth must not be there.
    for text, chat_id, topic in zip(summaries["embed_text"], summaries["chat_id"], conversations["topic"]):
        assert chat_id in text and topic not in text


@slow
def test_quality_is_scored_per_level_for_kura_too(kura_100):
    paths, outcome, _, _ = kura_100
    rows = query(paths.metrics, "SELECT * FROM quality_levels WHERE run_id = ? ORDER BY stage, level", [outcome.run_id])
    assert set(rows["stage"]) == {"clusters", "meta_clusters"} and set(rows["backend"]) == {"kura"}
    base = rows[(rows["stage"] == "clusters")]
    assert base["level"].tolist() == [0] and base["n_clusters"].tolist() == [10] and base["ari"].notna().all()
    meta = rows[rows["stage"] == "meta_clusters"]
    assert meta["level"].iloc[0] == 0 and meta["is_topic_level"].sum() == 1


@slow
def test_asset_checks_ran_for_every_stage(kura_100):
    from kura_perf.definitions import defs

    paths, *_ = kura_100
    if not defs.asset_checks:
        pytest.skip("no asset checks defined yet")
    checks = query(paths.metrics, "SELECT stage, check_name, passed FROM check_results WHERE profile = 'kura'")
    assert set(checks["stage"]) == set(STAGES)
    sanity = checks[checks["check_name"] == "sanity"]
    assert set(sanity["stage"]) == set(STAGES) and sanity["passed"].all(), sanity


@slow
def test_comparison_has_both_sides(kura_100, capsys):
    from kura_perf.cli.main import main
    from kura_perf.report.compare import compare_partitions

    paths, kura, reference, _ = kura_100
    assert reference.success, reference.failure
    table = compare_partitions(paths.metrics, "100", "reference:pca", "kura:kura")
    assert table["stage"].tolist() == [*STAGES, "total"]
    assert (table["status_left"] == "success").all() and (table["status_right"] == "success").all()
    total = table.set_index("stage").loc["total"]
    assert total["wall_s_right"] == pytest.approx(sum(r["wall_s"] for r in kura.records))
    assert total["wall_s_ratio"] == pytest.approx(total["wall_s_right"] / total["wall_s_left"])
    assert total["api_calls_right"] == 110 and np.isnan(total["api_calls_left"])
    assert total["bytes_written_left"] > 0 and total["bytes_written_right"] > 0
    backends = query(paths.metrics, "SELECT DISTINCT backend FROM comparison WHERE scale = '100'")
    assert set(backends["backend"]) == {"reference", "kura"}
    assert main(["compare", "--scale", "100", "reference:pca", "kura:kura"]) == 0
    out = capsys.readouterr().out
    assert "wall_s" in out and "R/L" in out and "meta_clusters" in out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


# -- refusal without the extra ------------------------------------------------------------------------
def test_kura_profiles_are_refused_without_the_extra(monkeypatch, tmp_path):
    from kura_perf.backends import get_backend
    from kura_perf.backends.model_factory import SIMULATOR_URL_ENV
    from kura_perf.defs.launch import run_partition

    monkeypatch.setitem(sys.modules, "kura", None)  # what `import kura` sees when it is not installed
    for name in ("kura", "kura-hdbscan", "kura-openai-embeddings"):
        with pytest.raises(ProfileError, match=r"pip install 'kura_perf\[kura\]'"):
            get_backend(get_profile(name), RunSettings.from_env())
    # Through Dagster, as `kura-perf run --profile kura` runs it: the step fails with the hint.
    monkeypatch.setenv(SIMULATOR_URL_ENV, "http://127.0.0.1:9/v1")  # no simulator needed to be refused
    with DagsterInstance.ephemeral() as instance:
        outcome = run_partition("100", "kura", stages=["conversations"], paths=Paths(tmp_path / "data"),
                                instance=instance)
    assert not outcome.success and "ProfileError" in outcome.failure and INSTALL_HINT in outcome.failure


def test_unsupported_settings_are_refused_by_key():
    from kura_perf.backends.kura import KuraBackend

    base = get_profile("kura")
    for change, key in (({"summary_model": "offline"}, "summary_model"),
                        ({"clustering": "agglomerative"}, "clustering"),
                        ({"projection": "pca"}, "projection"),
                        ({"embedding_dimension": 256}, "embedding_dimension")):
        with pytest.raises(ProfileError, match=key):
            KuraBackend(base.model_copy(update=change), RunSettings.from_env())


# -- conversions ----------------------------------------------------------------------------------------
def test_conversations_keep_ids_and_never_pass_the_truth():
    from kura.types import ConversationSummary

    from kura_perf.backends.kura_types import kura_conversation

    for conversation in generate_conversations(5):
        truth = conversation.topic
        conversation.metadata.update(topic=truth, Label=truth, note=truth, source="synthetic", tags=["a", "b"],
                                     nested={"x": 1})
        converted = kura_conversation(conversation)
        assert converted.chat_id == conversation.chat_id and converted.created_at == conversation.created_at
        assert [(m.role, m.content) for m in converted.messages] == [(m.role, m.content) for m in conversation.messages]
        assert truth not in json.dumps(converted.metadata)
        assert converted.metadata["source"] == "synthetic" and converted.metadata["tags"] == ["a", "b"]
        # What Kura's SummaryModel builds from it, and embeds:
        summary = ConversationSummary(chat_id=converted.chat_id, summary="s", metadata={
            "conversation_turns": len(converted.messages), **converted.metadata})
        assert truth not in str(summary) and converted.chat_id in str(summary)


def test_summaries_round_trip_through_parquet_to_the_text_kura_embeds(tmp_path):
    from kura.types import ConversationSummary

    from kura_perf.backends.kura_types import summaries_from_table, summaries_to_table

    made = [ConversationSummary(chat_id=f"c{i}", summary=f"sum {i}", request="r", topic="llm topic",
                                languages=["english"], task="t", concerning_score=1, user_frustration=2,
                                assistant_errors=[], metadata={"conversation_turns": 4, "source": "x", "w": 1.5})
            for i in range(3)]
    table = summaries_to_table(list(reversed(made)), ["c0", "c1", "c2"])
    assert table["chat_id"].tolist() == ["c0", "c1", "c2"] and table["concerning_score"].dtype == "int64"
    table.to_parquet(tmp_path / "s.parquet", index=False)
    rebuilt = summaries_from_table(pd.read_parquet(tmp_path / "s.parquet"))
    assert [str(s) for s in rebuilt] == [str(s) for s in made]
    with pytest.raises(Exception, match="missing"):
        summaries_to_table(made[:2], ["c0", "c1", "c2"])


def test_clusters_and_hierarchy_convert_to_the_reference_layout():
    from kura.types import Cluster, ProjectedCluster

    from kura_perf.backends.kura_types import (
        clusters_from_tables,
        clusters_to_tables,
        hierarchy_table,
        projection_table,
    )
    from kura_perf.checks.sanity import hierarchy_problems

    chat_ids = [f"x{i}" for i in range(6)]
    made = [Cluster(name=f"n{k}", description="d", slug=f"s_{k}", chat_ids=chat_ids[k::3], parent_id=None)
            for k in range(3)]
    main, assignments = clusters_to_tables(made, chat_ids)
    assert main["cluster_id"].tolist() == [0, 1, 2] and main["size"].tolist() == [2, 2, 2]
    assert assignments["cluster_id"].tolist() == [0, 1, 2, 0, 1, 2]
    base = clusters_from_tables(main, assignments)
    assert [c.id for c in base] == ["c0", "c1", "c2"] and base[1].chat_ids == ["x1", "x4"] and base[2].slug == "s_2"
    # One round of Kura's reduction: a new parent over c0 and c1, c2 left as a root.
    parent = Cluster(name="p", description="d", slug="p", chat_ids=base[0].chat_ids + base[1].chat_ids, parent_id=None)
    reduced = [base[2], parent, *(c.model_copy(update={"parent_id": parent.id}) for c in base[:2])]
    table = hierarchy_table(reduced, {c.id for c in base})
    assert hierarchy_problems(table, {0, 1, 2}) == []
    assert table.set_index("cluster_id").loc["m1-0", "size"] == 4
    projected = [ProjectedCluster(**c.model_dump(exclude={"count"}), x_coord=float(i), y_coord=-float(i), level=0)
                 for i, c in enumerate(base)]
    points = projection_table(projected, assignments)
    assert points["chat_id"].tolist() == chat_ids and points["x"].tolist() == [0, 1, 2, 0, 1, 2]
    assert points["x"].dtype == np.float32


# -- API counts, failures and time limits ------------------------------------------------------------------
def test_counters_are_log_deltas_with_cost():
    def log(ok, limited, tokens_in, faults=0):
        return {"entries": [
            {"endpoint": "chat.completions", "model": "gpt-4o-mini", "status": "200", "count": ok,
             "prompt_tokens": tokens_in, "completion_tokens": ok * 10, "total_tokens": tokens_in + ok * 10},
            {"endpoint": "chat.completions", "model": "gpt-4o-mini", "status": "429", "count": limited,
             "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            {"endpoint": "models", "model": "-", "status": "200", "count": 5, "prompt_tokens": 0,
             "completion_tokens": 0, "total_tokens": 0}], "faults": {"timeout": faults}}

    counters = counters_between(log(10, 1, 1000), log(110, 4, 1_001_000, faults=2))
    assert (counters.calls, counters.errors, counters.rate_limited) == (103, 3, 3)
    assert (counters.retries, counters.timeouts) == (3, 2)
    assert (counters.tokens_in, counters.tokens_out) == (1_000_000, 1000)
    assert counters.cost_usd == pytest.approx(0.15 + 1000 * 0.60 / 1e6)


def test_kura_failures_name_the_cause_and_the_traffic():
    from kura_perf.backends.kura import KuraFailure
    from kura_perf.meter.api import ApiCounters

    try:
        try:
            raise ValueError("Error code: 429 - rate limit\nmore")
        except ValueError as inner:
            raise RuntimeError("retries exhausted") from inner
    except RuntimeError as outer:
        traffic = ApiCounters(calls=7, errors=3, rate_limited=3)
        failure = KuraFailure("summaries", "summarise_conversations", outer, traffic)
    message = str(failure)
    assert "summarise_conversations" in message and "RuntimeError <- ValueError: Error code: 429" in message
    assert "after 7 API calls: 3 answered 429" in message


def test_the_loop_enforces_its_own_time_limit_and_cancels_kura():
    loop = KuraLoop()
    cancelled = []

    async def endless():
        try:
            while True:  # like Kura's meta-cluster loop: no cap
                await asyncio.sleep(0.01)
        finally:
            cancelled.append(True)

    try:
        # An endless coroutine ends only through the limit (pytest-timeout would catch a hang): no
        # wall-clock bound is asserted, the box may be loaded.
        with pytest.raises(BreakingPoint, match="time limit"):
            loop.run(endless(), "meta_clusters", time_limit_s=0.3)
        assert cancelled
        assert loop.run(asyncio.sleep(0, result=42), "x") == 42  # the loop survives for the next call
    finally:
        loop.close()


def test_the_meters_guard_interrupts_a_stage_waiting_on_kura():
    loop = KuraLoop()
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.append(True)

    try:
        with pytest.raises(BreakingPoint, match="time limit"):  # long before the 30 s sleep would end
            with Meter("summaries", timeout_s=0.3):
                loop.run(slow(), "summaries")
        deadline = time.monotonic() + 20
        while not cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cancelled
    finally:
        loop.close()


def test_a_429_storm_fails_the_stage_with_its_cause(monkeypatch):
    """Kura aborts a stage when one request runs out of the SDK's retries: recorded with the cause."""
    from kura_perf.backends.conversion import conversations_to_table
    from kura_perf.backends.kura import KuraBackend, KuraFailure
    from kura_perf.backends.model_factory import SIMULATOR_URL_ENV
    from kura_perf.files.outputs import StageData
    from kura_perf.simulator.process import run_in_thread
    from kura_perf.stages.base import StageInputs

    sim = run_in_thread({"chat": {"latency_ms": 0}, "faults": {"rate_limit_rate": 1.0, "forced_retry_after_s": 0.05}})
    try:
        monkeypatch.setenv(SIMULATOR_URL_ENV, sim.base_url)
        backend = KuraBackend(get_profile("kura"), RunSettings.from_env())
        table = conversations_to_table(generate_conversations(3))
        try:
            with pytest.raises(KuraFailure, match="429") as failure:
                backend.run("summaries", StageInputs(3, {"conversations": StageData(tables={"main": table})}))
        finally:
            backend.close()
    finally:
        sim.stop()
    assert "summarise_conversations" in str(failure.value) and "answered 429" in str(failure.value)
