"""ast.parse for the tests that read kura_perf's own source, safe beside other threads.

Before 3.11.8 CPython's AST converter keeps its recursion counter per interpreter, not per thread
(CPython gh-106905): when a thread another test left in the same xdist worker parses at the same
moment, a correct tree is thrown away with "SystemError: AST constructor recursion depth mismatch"
(CI failed on it once, in test_import_cycles). Each call resets the counter and the tree does not
depend on it, so a retry is sound; any other SystemError, or the same one three times, still fails.
"""

from __future__ import annotations

import ast

ATTEMPTS = 3


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")
