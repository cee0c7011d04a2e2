"""One atomic-write helper: every rename in kura_perf goes through kura_perf/files/atomic.py."""

from __future__ import annotations

import ast
from pathlib import Path

import kura_perf
from kura_perf.files.atomic import claim, is_temp, publish
from kura_perf_tests.source_trees import parse

PACKAGE = Path(kura_perf.__file__).parent

# Renames that are not writes, each with the reason it stays where it is.
ALLOWED = {
    "files/atomic.py": "the helper itself",
    "store/quarantine.py": "moves an unreadable record file aside (not a write); a missing file means another "
                           "process moved it first, which the caller handles itself",
}


def _renames(tree: ast.AST) -> list[int]:
    """Lines calling os.replace/os.rename/os.renames/shutil.move, or Path.rename/Path.replace (one
    positional argument: str.replace takes two, DataFrame.rename takes keywords)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, owner = node.func.attr, node.func.value
        module = owner.id if isinstance(owner, ast.Name) else None
        if (module == "os" and name in ("replace", "rename", "renames")) or (module == "shutil" and name == "move"):
            lines.append(node.lineno)
        elif module not in ("os", "shutil") and name in ("rename", "replace") and len(node.args) == 1 \
                and not node.keywords:
            lines.append(node.lineno)
    return lines


def test_no_rename_outside_the_atomic_helper():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in ALLOWED:
            continue
        found += [f"{relative}:{line}" for line in _renames(parse(path.read_text(encoding="utf-8")))]
    assert not found, ("write a temp file and rename it with kura_perf.files.atomic (atomic_write, publish, claim), "
                       f"or allow-list the rename with a reason: {found}")


def test_the_detector_sees_each_kind_of_rename():
    code = ("import os, shutil\nos.replace(a, b)\nos.rename(a, b)\nshutil.move(a, b)\ntmp.replace(path)\n"
            "tmp.rename(path)\ns.replace('a', 'b')\ndf.rename(columns={})\n")
    assert _renames(parse(code)) == [2, 3, 4, 5, 6]


def test_allow_listed_files_exist():
    assert all((PACKAGE / name).is_file() for name in ALLOWED)


def test_publish_moves_a_finished_file_or_folder_into_place(tmp_path):
    tmp = tmp_path / ".f.part"
    tmp.write_text("new")
    (tmp_path / "f").write_text("old")
    publish(tmp, tmp_path / "f")
    assert (tmp_path / "f").read_text() == "new" and not tmp.exists()
    work = tmp_path / ".entry.work"
    work.mkdir()
    (work / "model.onnx").write_bytes(b"x")
    publish(work, tmp_path / "entry", durable=False)
    assert (tmp_path / "entry" / "model.onnx").read_bytes() == b"x"


def test_claim_gives_a_file_to_one_taker_only(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("{}")
    first = claim(path, "claimed")
    assert first is not None and first.read_text() == "{}" and not path.exists()
    assert first.name.startswith("record.json.claimed-") and not is_temp(first)
    assert claim(path, "claimed") is None
