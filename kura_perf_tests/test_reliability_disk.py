"""Disk full (issue 9, defect 5), on a real 3 MB tmpfs mounted for the test (needs root; skipped
otherwise): the failed stage is recorded, no temp file is left (so there is room for the record),
and `kura-perf db` names the real error instead of calling the database busy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf_tests.tmpfs import mounted_tmpfs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def _fill(path: Path, leave_bytes: int) -> None:
    """A ballast file that leaves about `leave_bytes` free on path's filesystem."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path / f"ballast{len(list(path.glob('ballast*')))}", "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and (".tmp" in p.name or "kp-tmp" in p.name)]


def test_disk_full_is_recorded_and_cleaned_up(tmp_path, small_disk, monkeypatch, capsys):
    env = {**os.environ, "KURA_PERF_HOME": str(small_disk / "data"), "DAGSTER_HOME": str(tmp_path / "dh"),
           "PYTHONPATH": str(ROOT)}
    # room for the conversations of 1k (0.94 MB) and their record, not for the summaries (0.2 MB)
    _fill(small_disk, 1_120_000)
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", "1k", "--stages", "conversations",
                          "summaries"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "No space left on device" in out.stderr and "Traceback" not in out.stderr
    assert not _temps(small_disk), _temps(small_disk)

    from kura_perf.cli.main import main
    from kura_perf.store import query

    records = query(small_disk / "data" / "metrics",
                    "SELECT stage, status, error_message FROM stage_runs ORDER BY started_at").to_dict("records")
    assert [(r["stage"], r["status"]) for r in records] == [("conversations", "success"), ("summaries", "failed")]
    assert "No space left on device" in records[1]["error_message"]

    _fill(small_disk, 0)  # now not even the database file fits
    monkeypatch.setenv("KURA_PERF_HOME", env["KURA_PERF_HOME"])
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    capsys.readouterr()
    code = main(["db"])
    said = capsys.readouterr()
    assert code != 0
    assert "busy" not in said.out + said.err
    assert "space" in (said.out + said.err).lower(), said
    assert not _temps(small_disk), _temps(small_disk)
