"""Embedding shards and their merge go through the same metered run as a whole stage (issue 18): a
shard's memory error is a breaking point, Ctrl-C in a shard is recorded as interrupted, a shard's
heartbeat is store/liveness.py's, and a dead attempt's record comes from the one unfinished-record
constructor. In-process, with a stand-in embedder."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from kura_perf.errors import BreakingPoint
from kura_perf.files import outputs
from kura_perf.files.outputs import StageData
from kura_perf.pipeline import shards
from kura_perf.pipeline.runner import StageRun
from kura_perf.profiles import get_profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import StageResult
from kura_perf.store import liveness, query

ROWS = 10


class Embedder:
    name = "stand-in"

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    def run(self, stage, inputs):
        part = inputs.upstream["summaries"].tables["main"]
        if self.fail is not None:
            raise self.fail
        vectors = np.ones((len(part), 4), dtype=np.float32)
        return StageResult(StageData(tables={"ids": part[["chat_id"]]}, arrays={"main": vectors}),
                           items_in=len(part), items_out=len(part))

    def close(self):
        pass


def _run(kp_home, fail=None, **settings) -> StageRun:
    run = StageRun("embeddings", get_profile("offline"), "100",
                   settings=RunSettings.from_env(paths=Paths(kp_home), **settings), backend=Embedder(fail))
    summaries = pd.DataFrame({"chat_id": [f"c{i}" for i in range(ROWS)], "summary": ["s"] * ROWS})
    outputs.write_stage(run.folder, "summaries", StageData(tables={"main": summaries}))
    return run


def _shard_rows(kp_home):
    return query(kp_home / "metrics", "SELECT * FROM shard_runs ORDER BY shard_index, status")


def test_shards_and_merge_are_recorded_and_leave_no_marker(kp_home):
    run = _run(kp_home)
    specs = shards.plan_shards(ROWS, 2)
    records = [shards.run_embedding_shard(run, spec) for spec in specs]
    merged = shards.merge_embedding_shards(run, specs, records)
    assert merged.status == "success" and merged.items_in == ROWS
    assert len(outputs.read_stage(run.folder, "embeddings").arrays["main"]) == ROWS
    rows = _shard_rows(kp_home)
    assert rows["status"].tolist() == ["success", "success"] and rows["items_in"].tolist() == [5, 5]
    stage = query(kp_home / "metrics", "SELECT stage, status, extra FROM stage_runs")
    assert stage[["stage", "status"]].values.tolist() == [["embeddings", "success"]]
    assert '"shards": 2' in stage["extra"][0]
    assert not list((kp_home / "metrics_running").rglob("*.json"))
    assert not list(shards.shard_folder(run).glob("*.inflight.json"))


@pytest.mark.parametrize("error, raised, status", [
    (MemoryError("Unable to allocate 3.0 GiB for an array"), BreakingPoint, "breaking_point"),
    (KeyboardInterrupt(), KeyboardInterrupt, "interrupted"),
    (ValueError("bad value"), ValueError, "failed"),
])
def test_a_shard_ending_badly_is_classified_like_a_stage(kp_home, error, raised, status):
    run = _run(kp_home, fail=error)
    with pytest.raises(raised):
        shards.run_embedding_shard(run, shards.plan_shards(ROWS, 2)[0])
    rows = _shard_rows(kp_home)
    assert rows["status"].tolist() == [status] and rows["shard_index"].tolist() == [0]
    assert not list(shards.shard_folder(run).glob("*.inflight.json"))


def test_a_dead_attempt_is_recorded_as_died_and_the_shard_run_again(kp_home):
    run = _run(kp_home, shard_stale_s=5.0)  # the marker below is 60 s old: dead
    spec = shards.plan_shards(ROWS, 2)[1]
    folder = shards.shard_folder(run)
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fields = {"run_id": run.run_id, "stage": "embeddings", "worker": "lost-worker pid=1", "backend": "stand-in"}
    left = liveness.Heartbeat(None, fields, path=shards._marker(run, spec), extra={"attempt_id": "a1"})
    left.body.update(pid=dead.pid, beat_epoch=time.time() - 60)
    left._write()
    record = shards.run_embedding_shard(run, spec)
    assert record["status"] == "success"
    rows = _shard_rows(kp_home)
    assert sorted(rows["status"]) == ["died", "success"]
    died = rows[rows["status"] == "died"].iloc[0]
    assert died["error_type"] == "WorkerLost" and "lost-worker" in died["error_message"]
    assert died["attempt_id"] == "a1" and died["items_in"] == spec.stop - spec.start
