"""tests/python_ast.parse survives a collection's finalizer that formats a traceback, which on
CPython 3.11 (this project's Python) made ast.parse raise SystemError (see python_ast)."""

from __future__ import annotations

import traceback
from pathlib import Path

import mlxd
from tests.python_ast import parse

SOURCE = (Path(mlxd.__file__).parent / "router" / "core.py").read_text()


class FormatsOnCollection:
    """Like a collected asyncio task whose error was never retrieved: its finalizer formats a
    traceback, and 3.11's traceback formatting parses source."""

    def __del__(self) -> None:
        try:
            (lambda: 1 / 0)()
        except ZeroDivisionError as exc:
            traceback.format_exception(exc)


def _deep(levels: int):
    """parse(SOURCE) from `levels` frames down: the nested parse in a finalizer starts at
    another depth than the outer one."""
    return _deep(levels - 1) if levels else parse(SOURCE)


def test_a_parse_is_not_broken_by_a_finalizer_that_formats_a_traceback():
    for _ in range(20):
        for _ in range(50):  # cycles: only a collection frees them, possibly mid-parse
            obj = FormatsOnCollection()
            obj.me = obj  # type: ignore[attr-defined]
        assert _deep(40).body  # raised SystemError on 3.11.7 with a plain ast.parse
