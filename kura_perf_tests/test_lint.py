"""The repository passes `ruff check` with the rules in pyproject.toml.

Lint runs in the suite, not in a separate CI step, so `make test` on a fresh clone is the one gate: an unused
import, an unsorted import block or a loop closure that captures its variable late fails here, naming the
file and line. The second test keeps the first honest: if the configuration stopped selecting rules (or ruff
stopped reading it), the repository would "pass" vacuously.
"""
import re
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


NOQA = re.compile(r"#\s*noqa\b(?::\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)$")


def noqa_without_reason(text: str) -> list[int]:
    """Lines whose `# noqa` gives no reason after its codes (e.g. `# noqa: F401 - imported to check ...`)."""
    bare = []
    for number, line in enumerate(text.splitlines(), 1):
        found = NOQA.search(line)
        if found and not found["rest"].strip(" -:()"):
            bare.append(number)
    return bare


def test_every_noqa_says_why():
    assert noqa_without_reason("x = 1  # noqa: E731\nimport a  # noqa\nimport b  # noqa: F401 - checks the install\n"
                               "import c  # noqa: E402  (after the thread settings)\n") == [1, 2]
    bare = [f"{path.relative_to(ROOT)}:{line}"
            for folder in ("kura_perf", "kura_perf_tests", "scripts", "examples")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for line in noqa_without_reason(path.read_text())]
    assert bare == [], f"a `# noqa` without a reason (add one after the codes, e.g. `# noqa: F401 - why`): {bare}"


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
