"""`parse`: ast.parse for the tests that read the daemon's own source, safe on CPython 3.11.

3.11 keeps the AST conversion's recursion depth in interpreter-wide state (python/cpython
gh-106905), and its traceback formatting parses source (the carets under an expression). A
garbage collection during a parse can run a finalizer that formats a traceback (asyncio logs a
collected task's error that was never retrieved): the nested parse leaves the depth changed and
the outer one fails with "SystemError: AST constructor recursion depth mismatch" (CI, a unit
test after an e2e test's failure had left such a task)."""

from __future__ import annotations

import ast
import gc


def parse(source: str) -> ast.Module:
    """ast.parse(source) with no garbage collection while it runs (so no finalizer in it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()
