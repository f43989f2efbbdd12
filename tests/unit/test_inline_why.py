"""The reasons in an inline request's debug record (the e2e in tests/e2e/test_inline_why.py shows
the record itself): `clean_why` names the rule that left nothing, `cleaned` says why an answer
was dropped, and nothing is collected outside an explained request.

Documents are written with `┃` where the cursor is.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from mlxd.inline import why
from mlxd.inline.cuts import cleaned
from mlxd.inline.postprocess import RULES, clean, clean_why
from mlxd.prompts import CursorContext, context_at

CURSOR = "┃"


def at(doc: str) -> CursorContext:
    return context_at(doc.replace(CURSOR, ""), doc.index(CURSOR), language="python")


@pytest.mark.parametrize(
    ("doc", "answer", "rule"),
    [
        ("def add(a, b):\n    ┃\n    return a + b\n", "return a + b", "duplicate_of_next_line"),
        ("print(┃)\n", ")", "cut_at_suffix"),
        ("x = 1┃\n", "   \n  ", None),  # whitespace from the start: the model's, no rule's
        ("x = 1┃\n", "", None),  # nothing to begin with: no rule emptied it
        ("x = ┃\n", "1", None),  # kept
    ],
)
def test_clean_why_names_the_rule_that_left_nothing(doc: str, answer: str, rule: str | None):
    ctx = at(doc)
    text, emptied = clean_why(answer, ctx)
    assert text == clean(answer, ctx)
    assert emptied == rule
    assert rule is None or rule in RULES


def explain(fn, *args):
    """Runs `fn(*args)` inside an explained request; its record's (notes, answers)."""
    seen: list[why._Record] = []

    class Engine:
        def enabled_for(self, language: str) -> bool:
            return True

    @why.explained
    async def complete(engine, text, line, character, **kw):
        seen.append(why._current.get())
        fn(*args)
        return []

    logging.getLogger("mlxd.inline.why").setLevel(logging.DEBUG)
    asyncio.run(complete(Engine(), "", 0, 0, uri="file:///a.py", language="python"))
    return seen[0].notes, seen[0].answers


def test_cleaned_says_a_cap_cut_the_first_line() -> None:
    answer = SimpleNamespace(text="return a +", finish_reason="length")
    _, answers = explain(cleaned, answer, at("def f(a):\n    ┃\n"), True)
    assert answers == [
        "a cap (inline.max_ms, max_tokens) cut it before its first line ended (whole_lines)"
    ]


def test_cleaned_says_the_model_answered_nothing_and_keeps_a_kept_answer_quiet() -> None:
    _, answers = explain(
        cleaned, SimpleNamespace(text="", finish_reason="stop"), at("x = ┃\n"), True
    )
    assert answers == ["the model answered nothing (finish reason 'stop')"]
    _, answers = explain(cleaned, "1", at("x = ┃\n"), True)
    assert answers == [None]


def test_notes_are_collected_only_inside_an_explained_request() -> None:
    why.note("outside")
    why.answer("outside")
    assert why._current.get() is None
    notes, _ = explain(why.note, "inside")
    assert notes == ["inside"]
