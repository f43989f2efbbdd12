"""At a block start, the first line now and the rest in the background (inline/rest.py), in
the engine alone: a scripted foreground model and background runner (no daemon, no model;
tests/e2e/test_block_rest.py drives the real daemon)."""

from __future__ import annotations

import asyncio
from typing import Any

from mlxd.config import InlineConfig
from mlxd.inline.engine import InlineEngine
from mlxd.models import BLOCK_LINE_TOKENS
from mlxd.prompts import CursorContext
from mlxd.types import Outcome, Request

URI = "file:///proj/src/app.py"
HEADER = "def add(a, b):"


def outcome(text: str, finish: str = "stop", tokens: int = 4) -> Outcome:
    return Outcome(text, "local", "tiny", finish, 10, tokens, [], None, 1.0)


class Scripted:
    """A stand-in for the router (foreground) or the background runner: records each call,
    answers the next scripted Outcome."""

    def __init__(self, *answers: Outcome | None) -> None:
        self.answers = list(answers)
        self.calls: list[Request] = []
        self.done = asyncio.Event()

    async def __call__(self, request: Request, ctx: CursorContext) -> Any:
        self.calls.append(request)
        await asyncio.sleep(0)
        if len(self.calls) == len(self.answers):
            self.done.set()
        return self.answers[len(self.calls) - 1]


def engine(model: Scripted, runner: Scripted, local: bool = True) -> InlineEngine:
    return InlineEngine(InlineConfig(), model, background=runner, local_first=lambda uri: local)  # type: ignore[arg-type]


async def complete(eng: InlineEngine, text: str = HEADER) -> list[str]:
    """The items at the end of `text`."""
    line, last = text.count("\n"), text.split("\n")[-1]
    items = await eng.complete(text, line, len(last), uri=URI, language="python")
    return [item.insert_text for item in items]


async def test_the_first_line_is_shown_and_the_rest_goes_on_into_the_cache() -> None:
    # The token that ends the first line carries the next line's start: it is not shown.
    model = Scripted(outcome("\n    if a:\n        ret", tokens=5))
    runner = Scripted(outcome("urn b"))
    eng = engine(model, runner)
    assert await complete(eng) == ["\n    if a:"]
    (first,) = model.calls
    assert (first.max_lines, first.line_tokens) == (1, BLOCK_LINE_TOKENS)
    await asyncio.wait_for(runner.done.wait(), 5)
    (rest,) = runner.calls
    assert rest.assistant_prefix == "\n    if a:\n        ret"  # the same generation goes on
    assert (rest.max_lines, rest.max_tokens, rest.priority) == (None, 64 - 5, "background")
    assert rest.max_time_s is None and rest.deadline is None
    await asyncio.sleep(0)
    assert await complete(eng) == ["\n    if a:\n        return b"]  # asked again
    assert await complete(eng, HEADER + "\n    if a:") == ["\n        return b"]  # accepted
    assert len(model.calls) == 1  # neither asked the model
    assert eng.snapshot()["rest_stored"] == 1


async def test_where_the_rest_cannot_go_on_the_block_is_asked_for_whole() -> None:
    # A cloud model first (never called in the background), or work ahead off: as before.
    for local, runner in ((False, Scripted()), (True, None)):
        model = Scripted(outcome("\n    if a:\n        return b\n"))
        eng = InlineEngine(
            InlineConfig(), model, background=runner, local_first=lambda u, local=local: local
        )
        assert await complete(eng) == ["\n    if a:\n        return b"]
        assert (model.calls[0].max_lines, model.calls[0].line_tokens) == (None, None)


async def test_a_line_the_bound_cut_goes_on_its_first_line_first() -> None:
    # No line by the bound: nothing shown, and the generation goes on from its cut text, up to
    # the end of its first line, then the block; a request there is answered from it.
    model = Scripted(outcome("\n    if", "length", tokens=2))
    runner = Scripted(outcome(" a:\n        re"), outcome("turn b"))
    eng = engine(model, runner)
    assert await complete(eng) == []
    await asyncio.wait_for(runner.done.wait(), 5)
    line, block = runner.calls
    assert (line.assistant_prefix, line.max_lines) == ("\n    if", 1)
    assert (block.assistant_prefix, block.max_lines) == ("\n    if a:\n        re", None)
    assert block.max_tokens == 64 - 2 - 4
    await asyncio.sleep(0)
    assert await complete(eng) == ["\n    if a:\n        return b"]
    assert len(model.calls) == 1
