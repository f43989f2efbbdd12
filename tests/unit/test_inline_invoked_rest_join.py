"""An invoked request joining a resting next job whose cap cut its line: the line goes on in
a rest job at the block start (nexts `_at_rest` -> go_on), and ahead.join hands over to it
(`_join_rest(going, ...)`). The invoked request does not wait for the whole block there (its
alternatives take the bound); it did before this was passed on (helper-95, session 30)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlxd.config import InlineConfig
from mlxd.inline import ahead
from mlxd.inline.engine import InlineEngine
from mlxd.prompts import CursorContext
from mlxd.types import Outcome, Request

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

X = "file:///proj/src/x.py"
TEXT = "def add(a, b):"
AT = (0, len(TEXT))


def outcome(text: str, finish: str = "stop", tokens: int = 4) -> Outcome:
    return Outcome(text, "local", "tiny", finish, 10, tokens, [], None, 1.0)


async def test_invoked_request_joining_a_cut_resting_job_leaves_time_for_alternatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ahead, "CURSOR_SETTLE_S", 0)
    release_next = asyncio.Event()
    hold_block = asyncio.Event()
    bg: list[Request] = []
    alt_left: list[float] = []

    async def runner(request: Request, ctx: CursorContext) -> Any:
        if request.max_tokens == 0:
            return "warm"
        bg.append(request)
        if len(bg) == 1:  # the resting next job at the cursor: its cap cuts the line
            await release_next.wait()
            return outcome("\n    if", "length", tokens=2)
        if len(bg) == 2:  # the rest job's first phase: the line ends 50 ms later
            await asyncio.sleep(0.05)
            return outcome(" a:\n", "stop")
        await hold_block.wait()  # the block: a slow machine
        return outcome("        return b")

    calls: list[Request] = []

    async def model(request: Request, ctx: CursorContext) -> Any:
        calls.append(request)
        nth = len(calls)
        left = request.deadline - time.monotonic()  # type: ignore[operator]
        alt_left.append(left)
        if left <= 0:
            raise TimeoutError
        await asyncio.sleep(0)
        return outcome("\n    return a + b\n" if nth == 1 else "\n    return b\n")

    eng = InlineEngine(
        InlineConfig(max_ms=600), model, background=runner, local_first=lambda u: True
    )  # type: ignore[arg-type]
    eng.opened(X, "python", TEXT)
    eng.moved(X, "python", TEXT, AT)
    end = time.monotonic() + 5
    while not bg:
        assert time.monotonic() < end
        await asyncio.sleep(0.005)
    job = eng.ahead._jobs.get(X)
    assert job is not None and job.kind == "next", eng.ahead._jobs
    asyncio.get_running_loop().call_later(0.05, release_next.set)
    t0 = time.monotonic()
    items = await eng.complete(TEXT, *AT, uri=X, language="python", invoked=True)
    took = time.monotonic() - t0
    hold_block.set()
    got = [i.insert_text for i in items]
    assert got and got[0] == "\n    if a:", (got, bg)
    assert len(got) == 3, (got, alt_left, took)  # the alternatives had time
