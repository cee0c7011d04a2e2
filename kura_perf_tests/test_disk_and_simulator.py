"""Issue 23, defects 4 and 8.

Disk full (4): on a real small tmpfs (mounted for the test; skipped where mounting is not allowed),
every stage writer (Parquet tables, .npy arrays, the manifest; all at once or streamed) fails with
an error that says "No space left on device" and names the file, and leaves nothing of the stage
behind: no temp file and no output file without its manifest. numpy's errno-less short write
("384000 requested and 100320 written") is translated too, also tested without a mount.

The simulator (8): it refuses what the real OpenAI API refuses, in OpenAI's error shape: an unknown
model (404 model_not_found), `n` outside 1..128 and a bad `max_tokens` (400 naming the param), a
request over the model's context (400) and a body over the size cap (413), and a client that hangs up
mid-request costs one log line, not a traceback. Models a profile or the config names are served.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kura_perf import atomic, outputs, streaming
from kura_perf.outputs import StageData
from kura_perf.stages.base import StageResult
from kura_perf_tests.simulator_fixtures import fresh_simulator, pid_gone, shared_simulator

# --- disk full ------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted after the test (also on failure)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _leave_free(disk: Path, leave_bytes: int) -> None:
    """A ballast file that leaves about `leave_bytes` free on the tmpfs."""
    st = os.statvfs(disk)
    with open(disk / "ballast", "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave_bytes, 0))


def _left_behind(folder: Path, stage: str) -> list[str]:
    """Whatever of `stage` is in `folder` besides its (empty) lock file: outputs, temps, part folders."""
    return sorted(p.name for p in folder.iterdir() if stage in p.name and p.name != f".{stage}.lock")


def _ids(n: int) -> pd.DataFrame:
    return pd.DataFrame({"chat_id": [f"chat-{i:06d}" for i in range(n)]})


def _assert_disk_full_named(exc: BaseException, path: Path) -> None:
    assert "no space left on device" in str(exc).lower(), str(exc)
    assert str(path) in str(exc), str(exc)


def test_disk_full_on_an_array_names_it_and_leaves_no_table_behind(tiny_disk):
    """The fault probe's case: embeddings' ids table fits, its 300 KB vectors do not."""
    folder = tiny_disk / "out"
    folder.mkdir()
    _leave_free(tiny_disk, 100_000)
    data = StageData(tables={"ids": _ids(200)}, arrays={"main": np.ones((200, 384), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(folder, "embeddings", data)
    _assert_disk_full_named(raised.value, folder / "embeddings.npy")
    assert _left_behind(folder, "embeddings") == []
    assert not outputs.has_stage(folder, "embeddings")


def test_disk_full_on_the_manifest_unpublishes_the_stage_files(tiny_disk):
    """Tables and arrays fit, the manifest (here made large by its checkpoint) does not: none of the
    stage's files may stay in place without it."""
    folder = tiny_disk / "out"
    folder.mkdir()
    _leave_free(tiny_disk, 200_000)
    data = StageData(tables={"main": _ids(50)}, arrays={"main": np.ones((50, 8), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(folder, "summaries", data, checkpoint={"padding": "x" * 400_000})
    _assert_disk_full_named(raised.value, folder / "summaries.manifest.json")
    assert _left_behind(folder, "summaries") == []


def test_disk_full_while_streaming_names_the_file_and_cleans_up(tiny_disk):
    folder = tiny_disk / "out"
    outputs.write_stage(folder, "summaries", StageData(tables={"main": _ids(600)}))
    _leave_free(tiny_disk, 150_000)

    class Vectors:
        name = "fake"

        def run(self, stage, inputs):
            table = inputs.upstream["summaries"].tables["main"]
            vectors = np.ones((len(table), 256), dtype=np.float32)  # 100 KB a batch
            return StageResult(StageData(tables={"ids": table}, arrays={"main": vectors}), len(table), len(table))

    with pytest.raises(OSError) as raised:
        streaming.run_streamed("embeddings", Vectors(), folder, 600, batch_size=100)
    _assert_disk_full_named(raised.value, folder / "embeddings.npy")
    assert _left_behind(folder, "embeddings") == []
    assert outputs.has_stage(folder, "summaries")  # the upstream stage is untouched


def test_numpy_short_write_is_called_disk_full_and_named(tmp_path, monkeypatch):
    """Without a mount: np.save's own message, on a disk with (as the filesystem reports) no room left."""
    def short_write(path, array):
        path.write_bytes(b"\x93NUMPY partial")
        raise OSError("384000 requested and 100320 written")

    monkeypatch.setattr(outputs, "_save_npy", short_write)
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: 0, raising=False)  # the filesystem says: full
    data = StageData(tables={"ids": _ids(10)}, arrays={"main": np.ones((10, 4), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(tmp_path, "embeddings", data)
    _assert_disk_full_named(raised.value, tmp_path / "embeddings.npy")
    assert "384000" in str(raised.value)  # what numpy said is kept
    assert _left_behind(tmp_path, "embeddings") == []
