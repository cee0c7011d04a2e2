"""The repository passes `ruff check` with the rules in pyproject.toml.

Lint runs in the suite, not in a separate CI step, so `make test` on a fresh clone is the one gate: an unused
import, an unsorted import block or a loop closure that captures its variable late fails here, naming the
file and line. The second test keeps the first honest: if the configuration stopped selecting rules (or ruff
stopped reading it), the repository would "pass" vacuously.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if not found:
        pytest.fail("ruff is not installed: it is in the dev extra (pip install -e '.[dev]')")
    return [found]


def test_repository_passes_ruff():
    done = subprocess.run([*ruff(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_reads_the_project_rules(tmp_path):
    """A file with an unused import and a late-binding loop closure, checked under the project's config."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nfns = []\nfor i in range(3):\n    fns.append(lambda: i)\n")
    done = subprocess.run(
        [*ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), "--output-format", "concise",
         str(bad)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "F401" in done.stdout and "B023" in done.stdout, done.stdout
