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

    def __init__(self, *answers: Outcome | None, gate: asyncio.Event | None = None) -> None:
        self.answers = list(answers)
        self.calls: list[Request] = []
        self.done = asyncio.Event()
        self.gate = gate  # set: each call answers only once it is set (a slow model)

    async def __call__(self, request: Request, ctx: CursorContext) -> Any:
        self.calls.append(request)
        nth = len(self.calls) - 1  # concurrent calls (alternatives) each get their own answer
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if len(self.calls) == len(self.answers):
            self.done.set()
        return self.answers[nth]


def engine(
    model: Scripted, runner: Scripted, local: bool = True, max_ms: int = 1500
) -> InlineEngine:
    cfg = InlineConfig(max_ms=max_ms)
    return InlineEngine(cfg, model, background=runner, local_first=lambda uri: local)  # type: ignore[arg-type]


async def complete(eng: InlineEngine, text: str = HEADER) -> list[str]:
    """The items at the end of `text`."""
    line, last = text.count("\n"), text.split("\n")[-1]
    items = await eng.complete(text, line, len(last), uri=URI, language="python")
    return [item.insert_text for item in items]


async def test_the_first_line_is_shown_and_the_rest_goes_on_into_the_cache() -> None:
    # The rest is not written by the bound (a slow model): the first line is shown; the token
    # that ends it carries the next line's start, not shown.
    model = Scripted(outcome("\n    if a:\n        ret", tokens=5))
    slow = asyncio.Event()
    runner = Scripted(outcome("urn b"), gate=slow)
    eng = engine(model, runner, max_ms=150)
    assert await complete(eng) == ["\n    if a:"]
    (first,) = model.calls
    assert (first.max_lines, first.line_tokens) == (1, BLOCK_LINE_TOKENS)
    slow.set()
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


async def test_a_block_written_within_the_bound_is_shown_whole_at_once() -> None:
    # The first line answers, its rest goes on in the background and is done before the
    # request's bound: the request shows the whole block, from that one generation.
    model = Scripted(outcome("\n    if a:\n        ret", tokens=5))
    runner = Scripted(outcome("urn b"))
    eng = engine(model, runner)
    assert await complete(eng) == ["\n    if a:\n        return b"]
    assert [(c.max_lines, c.line_tokens) for c in model.calls] == [(1, BLOCK_LINE_TOKENS)]
    assert [r.assistant_prefix for r in runner.calls] == ["\n    if a:\n        ret"]
    assert eng.snapshot()["late"] == 0 and eng.snapshot()["rest_stored"] == 1


async def test_a_block_ended_with_its_first_line_starts_one_next_job_after_it() -> None:
    # The model ends the block with its first line: the rest job ends at once and starts the
    # next job after that line (rest.py then_next); the request, which waited for the block,
    # then finds that job under way and starts no second one beside it.
    model = Scripted(outcome("\n    return b\n", tokens=3))
    slow = asyncio.Event()
    calls: list[Request] = []

    async def runner(request: Request, ctx: CursorContext) -> Any:
        calls.append(request)
        if len(calls) == 1:  # the rest: the model ends the block
            return outcome("", "stop", tokens=1)
        await slow.wait()  # the next job after the line, still running
        return outcome("\nx = 1")

    eng = InlineEngine(InlineConfig(), model, background=runner, local_first=lambda uri: True)  # type: ignore[arg-type]
    assert await complete(eng) == ["\n    return b"]
    st = eng.snapshot()
    assert (st["ahead_started"], st["ahead_cancelled"], len(calls)) == (1, 0, 2), st
    slow.set()


async def test_a_request_that_joins_the_rest_at_a_block_start_waits_for_the_block() -> None:
    # The bound cut the first answer before its line ended; the rest goes on, its first line
    # first. A request there that waits for it gets the block as far as it is written by its
    # bound, not its first line as soon as that is stored (typing along it still would).
    model = Scripted(outcome("\n    if", "length", tokens=2))
    line_done, block_done = asyncio.Event(), asyncio.Event()
    answers = {1: (line_done, outcome(" a:\n        re")), 2: (block_done, outcome("turn b"))}
    calls: list[Request] = []

    async def runner(request: Request, ctx: CursorContext) -> Any:
        calls.append(request)
        gate, answer = answers[len(calls)]
        await gate.wait()
        return answer

    eng = InlineEngine(InlineConfig(), model, background=runner, local_first=lambda uri: True)  # type: ignore[arg-type]
    assert await complete(eng) == []
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, line_done.set)
    loop.call_later(0.15, block_done.set)
    assert await complete(eng) == ["\n    if a:\n        return b"]
    assert len(model.calls) == 1 and len(calls) == 2


async def test_asked_for_at_a_block_start_the_alternatives_get_the_bound_not_the_block() -> None:
    # triggerKind Invoked: the first line is shown at once and the sampled alternatives run in
    # what is left of the bound (they are whole blocks of their own).
    model = Scripted(
        outcome("\n    if a:\n        ret", tokens=5),
        outcome("\n    return a + b\n"),
        outcome("\n    return b\n"),
    )
    slow = asyncio.Event()
    eng = engine(model, Scripted(outcome("urn b"), gate=slow))
    items = await eng.complete(HEADER, 0, len(HEADER), uri=URI, language="python", invoked=True)
    assert [i.insert_text for i in items] == [
        "\n    if a:",
        "\n    return a + b",
        "\n    return b",
    ]
    slow.set()


async def test_a_client_cancel_while_the_block_is_written_leaves_it_going_on() -> None:
    model = Scripted(outcome("\n    if a:\n        ret", tokens=5))
    slow = asyncio.Event()
    runner = Scripted(outcome("urn b"), gate=slow)
    eng = engine(model, runner)
    asking = asyncio.ensure_future(complete(eng))
    while not runner.calls:  # the first line answered; the request waits for the block
        await asyncio.sleep(0.01)
    asking.cancel()
    try:
        await asking
    except asyncio.CancelledError:
        pass
    slow.set()
    await asyncio.wait_for(runner.done.wait(), 5)
    await asyncio.sleep(0)
    assert await complete(eng) == ["\n    if a:\n        return b"]
    assert len(model.calls) == 1


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
