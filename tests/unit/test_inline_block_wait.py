"""A request at a block start waits, within its bound, for the block its rest job writes
(RestJobs.block_by, `_join_rest` whole): what must hold meanwhile, in the engine alone with
scripted stand-ins (as tests/unit/test_inline_block.py). Each failed on the first version of
the wait (helper-94's attack, session 30)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlxd.config import InlineConfig
from mlxd.inline.engine import InlineEngine
from mlxd.prompts import CursorContext
from mlxd.types import Outcome, Request

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

X = "file:///proj/src/x.py"
Y = "file:///proj/src/y.py"
HEADER = "def add(a, b):"
FIRST = "\n    if a:\n        ret"  # the first line's answer: its generation went on


def outcome(text: str, finish: str = "stop", tokens: int = 4) -> Outcome:
    return Outcome(text, "local", "tiny", finish, 10, tokens, [], None, 1.0)


async def until(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.005)


class World:
    """A foreground model and a background runner keyed on the document: X's rest job and
    anything after it hold until released; Y's first next job answers at once."""

    def __init__(self) -> None:
        self.fg: list[tuple[str, Request]] = []
        self.bg: list[tuple[str, Request]] = []
        self.hold = asyncio.Event()

    async def model(self, request: Request, ctx: CursorContext) -> Any:
        self.fg.append((ctx.uri, request))
        await asyncio.sleep(0)
        if ctx.uri == X:
            return outcome(FIRST, tokens=5)
        return outcome("1")  # y: "a = " -> "1"

    async def runner(self, request: Request, ctx: CursorContext) -> Any:
        self.bg.append((ctx.uri, request))
        if ctx.uri == Y and len([u for u, _ in self.bg if u == Y]) == 1:
            return outcome("\nb = 2")  # the next item after "a = 1"
        await self.hold.wait()
        return outcome("urn b")


def make(world: World, **cfg: Any) -> InlineEngine:
    return InlineEngine(
        InlineConfig(**cfg), world.model, background=world.runner, local_first=lambda u: True
    )  # type: ignore[arg-type]


async def ask(eng: InlineEngine, uri: str, text: str, invoked: bool = False) -> list[str]:
    line = text.count("\n")
    col = len(text) - (text.rfind("\n") + 1)
    items = await eng.complete(text, line, col, uri=uri, language="python", invoked=invoked)
    return [i.insert_text for i in items]


async def waiting_for_block(w: World) -> tuple[InlineEngine, asyncio.Future[list[str]]]:
    """An engine and a request at X's block start that waits for its block (its rest job
    runs, held by `w`)."""
    eng = make(w)
    a = asyncio.ensure_future(ask(eng, X, HEADER))
    await until(lambda: any(u == X for u, _ in w.bg))
    return eng, a


async def test_a_request_whose_rest_job_was_stopped_leaves_the_newer_work_alone() -> None:
    # A waits at X's block start for its block (rest job R_A). Meanwhile the user accepts in
    # another document: B is a cache hit on a pregenerated item, and its work ahead (the next
    # job N_B after it, for the accept that follows) replaces R_A (one job at a time). A then
    # wakes with its first line; before, it started a next job of its own after that line,
    # which stopped N_B: the next accept in Y was a fresh generation, not a cache hit.
    w = World()
    eng = make(w)
    assert await ask(eng, Y, "a = ") == ["1"]
    await until(lambda: not eng.ahead._jobs)  # Y's next item is stored
    assert eng.cache.peek(Y, "a = 1", "") == "\nb = 2"
    a = asyncio.ensure_future(ask(eng, X, HEADER))
    await until(lambda: any(u == X for u, _ in w.bg))  # A waits in block_by, R_A runs
    assert not a.done()
    assert await ask(eng, Y, "a = 1") == ["\nb = 2"]  # B: a hit; its next job N_B starts
    n_b = eng.ahead._jobs.get(Y)
    assert n_b is not None and n_b.kind == "next"
    got = await a
    assert got == ["\n    if a:"]
    # N_B, which Y's next accept needs, must still run; A (whose position the user left) must
    # not have replaced it with work of its own.
    assert eng.ahead._jobs.get(Y) is n_b, (eng.ahead._jobs, eng.snapshot())
    w.hold.set()


async def test_a_request_waiting_for_its_block_starts_no_work_for_a_closed_document() -> None:
    # didClose while A waits: its rest job is stopped (forget), A wakes; before, it started a
    # next job after its first line, for the closed document (a generation nobody will read,
    # items cached for a uri forget() has just cleared).
    w = World()
    eng, a = await waiting_for_block(w)
    eng.forget(X)  # didClose
    await a
    await asyncio.sleep(0.05)
    assert eng.ahead._jobs.get(X) is None, eng.ahead._jobs
    assert [u for u, _ in w.bg] == [X], w.bg  # only the rest job: nothing after the close
    w.hold.set()


async def test_a_superseded_request_waiting_for_its_block_answers_nothing() -> None:
    # A newer request for the same document (elsewhere) while A waits: as a request that was
    # waiting on work ahead (_from_cache: "a newer request here ... meanwhile" -> []), A has
    # nothing to show; before, it answered its first line at the old position, and started a
    # next job there (after the newer one was answered).
    w = World()
    eng, a = await waiting_for_block(w)
    other = HEADER + "\n    pass\n\nx = "  # another position (no block start) in X
    b = asyncio.ensure_future(ask(eng, X, other))
    got_a = await a
    await b
    assert got_a == [], got_a
    w.hold.set()


async def test_an_invoked_request_that_joins_a_block_start_leaves_time_for_alternatives() -> None:
    # The bound cut the first answer before its line ended (nothing shown): the rest goes on,
    # its first line first. The user then asks (triggerKind Invoked): an invoked request does
    # not wait for the block (its alternatives take the bound); before, the join
    # (_join_rest `whole`) waited till the bound and the alternatives had no time left.
    line_done = asyncio.Event()
    calls: list[Request] = []
    alt_left: list[float] = []

    async def model(request: Request, ctx: CursorContext) -> Any:
        calls.append(request)
        nth = len(calls)
        await asyncio.sleep(0)
        if nth == 1:
            return outcome("\n    if", "length", tokens=2)
        left = request.deadline - time.monotonic()  # type: ignore[operator]
        alt_left.append(left)
        if left <= 0:  # the router: no time left, no answer
            raise TimeoutError
        return outcome("\n    return a + b\n" if nth == 2 else "\n    return b\n")

    hold = asyncio.Event()
    bg: list[Request] = []

    async def runner(request: Request, ctx: CursorContext) -> Any:
        bg.append(request)
        if len(bg) == 1:
            await line_done.wait()
            return outcome(" a:\n        re")
        await hold.wait()  # the block: a slow machine, not done by the bound
        return outcome("turn b")

    eng = InlineEngine(
        InlineConfig(max_ms=600), model, background=runner, local_first=lambda u: True
    )  # type: ignore[arg-type]
    assert await ask(eng, X, HEADER) == []
    asyncio.get_running_loop().call_later(0.05, line_done.set)
    t0 = time.monotonic()
    got = await ask(eng, X, HEADER, invoked=True)
    took = time.monotonic() - t0
    hold.set()
    assert got[0] == "\n    if a:"
    assert len(got) == 3, (got, alt_left, took)  # the alternatives had time
