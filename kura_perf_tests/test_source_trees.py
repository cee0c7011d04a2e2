"""The source-reading tests' parse retries only CPython gh-106905's false alarm, and only a few times."""

from __future__ import annotations

import ast

import pytest

from kura_perf_tests import source_trees


def _flaky_parse(failures: list[str]):
    real = ast.parse

    def parse(source, filename="<unknown>"):
        if failures:
            raise SystemError(failures.pop(0))
        return real(source, filename=filename)
    return parse


def test_a_recursion_depth_mismatch_is_retried_and_the_tree_returned(monkeypatch):
    monkeypatch.setattr(source_trees.ast, "parse", _flaky_parse(
        ["AST constructor recursion depth mismatch (before=147, after=197)"]))
    tree = source_trees.parse("x = 1\n")
    assert isinstance(tree.body[0], ast.Assign)


def test_the_mismatch_every_time_still_fails(monkeypatch):
    monkeypatch.setattr(source_trees.ast, "parse", _flaky_parse(
        ["AST constructor recursion depth mismatch"] * source_trees.ATTEMPTS))
    with pytest.raises(SystemError, match="mismatch"):
        source_trees.parse("x = 1\n")


def test_another_system_error_is_not_retried(monkeypatch):
    failures = ["something else broke", "AST constructor recursion depth mismatch"]
    monkeypatch.setattr(source_trees.ast, "parse", _flaky_parse(failures))
    with pytest.raises(SystemError, match="something else"):
        source_trees.parse("x = 1\n")
    assert len(failures) == 1  # no second attempt
