"""`make test` runs the suite in three passes (see the Makefile's `test` target); the editor pass
collects tests/editors only. A test marked `editor` anywhere else would be run by no pass."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_the_editor_mark_is_used_only_under_tests_editors() -> None:
    marked = {
        p.relative_to(TESTS).as_posix()
        for p in TESTS.rglob("*.py")
        if re.search(r"\bmark\.editor\b", p.read_text())
    }
    assert marked, "no test is marked `editor`: the Makefile's editor pass would run nothing"
    assert all(name.startswith("editors/") for name in marked), sorted(marked)
