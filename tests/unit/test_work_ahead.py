"""The inline engine's work ahead (inline/ahead.py), event order with async stand-ins for the
router: a real request never waits behind a background job of its document."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlxd.config import InlineConfig
from mlxd.inline import ahead
from mlxd.inline.engine import InlineEngine
from mlxd.prompts import CursorContext
from mlxd.types import Request

URI = "file:///proj/app.py"


class Trace:
    """The interactive `generate` and the background runner, recording what happens in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.background_started = asyncio.Event()
        self.release = asyncio.Event()  # background jobs wait for it (a long generation)

    async def generate(self, request: Request, ctx: CursorContext) -> str:
        self.events.append(f"interactive {len(ctx.prefix)}")
        return "x + 1"

    async def background(self, request: Request, ctx: CursorContext) -> Any:
        assert request.priority == "background"
        kind = "warm" if request.max_tokens == 0 else "next"
        self.events.append(f"{kind} start {len(ctx.prefix)}")
        self.background_started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.events.append(f"{kind} cancelled")
            raise
        self.events.append(f"{kind} done")
        return "y"


def engine(trace: Trace) -> InlineEngine:
    return InlineEngine(
        InlineConfig(whole_lines=False), trace.generate, background=trace.background
    )


async def test_a_request_elsewhere_cancels_the_next_job_before_it_generates() -> None:
    trace = Trace()
    eng = engine(trace)
    text = "a = 1\nb = "
    await eng.complete(text, 1, 4, uri=URI, language="python")
    await trace.background_started.wait()
    await eng.complete(text, 0, 5, uri=URI, language="python")  # another position
    assert trace.events == [
        "interactive 10",
        "next start 15",  # after "x + 1" is accepted
        "next cancelled",
        "interactive 5",
    ]
    assert eng.snapshot()["ahead_cancelled"] == 1


async def test_a_request_at_the_predicted_position_waits_for_the_job() -> None:
    trace = Trace()
    eng = engine(trace)
    await eng.complete("b = ", 0, 4, uri=URI, language="python")
    await trace.background_started.wait()
    accepted = eng.complete("b = x + 1", 0, 9, uri=URI, language="python")
    waiting = asyncio.ensure_future(accepted)
    await asyncio.sleep(0)
    trace.release.set()
    items = await waiting
    assert [i.insert_text for i in items] == ["y"]
    assert trace.events[:3] == ["interactive 4", "next start 9", "next done"]
    snap = eng.snapshot()
    assert (snap["generations"], snap["ahead_joined"], snap["ahead_hits"]) == (1, 1, 1)


async def test_an_edit_elsewhere_drops_the_item_and_typing_it_keeps_it() -> None:
    trace = Trace()
    trace.release.set()
    eng = engine(trace)
    await eng.complete("b = ", 0, 4, uri=URI, language="python")
    await asyncio.sleep(0.01)
    assert eng.cache.peek(URI, "b = x + 1", "") == "y"
    eng.changed(URI, "python", "b = x", (0, 4, "x"))  # typing the suggestion: kept
    assert eng.cache.peek(URI, "b = x + 1", "") == "y"
    eng.changed(URI, "python", "#\nb = x", (0, 0, "#\n"))  # elsewhere: stale
    assert eng.cache.peek(URI, "b = x + 1", "") is None
    assert eng.snapshot()["ahead_dropped"] == 1


async def test_one_background_job_at_a_time_and_any_real_request_preempts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ahead, "SETTLE_S", 0)  # warm-ups start on the next loop turn
    trace = Trace()
    eng = engine(trace)
    eng.opened("file:///a.py", "python", "a = 1\n")
    eng.opened("file:///b.py", "python", "bb = 2\n")  # many files opened: the newest is warmed
    await trace.background_started.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert trace.events == ["warm start 7"]  # the older one was stopped before it started
    await eng.complete("c = ", 0, 4, uri="file:///c.py", language="python")  # another document
    assert trace.events[1:3] == ["warm cancelled", "interactive 4"]


async def test_a_request_anywhere_defers_pending_warm_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "SETTLE_S", 0)
    trace = Trace()
    eng = engine(trace)
    eng.opened("file:///a.py", "python", "a = 1\n")
    await eng.complete("c = ", 0, 4, uri="file:///c.py", language="python")  # before it fires
    for _ in range(5):
        await asyncio.sleep(0)
    assert not [e for e in trace.events if e.startswith("warm")]  # the user is active


async def test_a_job_not_done_within_max_ms_answers_empty_and_lands_in_the_cache() -> None:
    trace = Trace()
    eng = InlineEngine(
        InlineConfig(whole_lines=False, max_ms=50), trace.generate, background=trace.background
    )
    await eng.complete("b = ", 0, 4, uri=URI, language="python")
    await trace.background_started.wait()
    late = await eng.complete("b = x + 1", 0, 9, uri=URI, language="python")
    assert late == [] and trace.events == ["interactive 4", "next start 9"]  # no 2nd model call
    trace.release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    again = await eng.complete("b = x + 1", 0, 9, uri=URI, language="python")
    assert [i.insert_text for i in again] == ["y"]
    snap = eng.snapshot()
    assert (snap["ahead_late"], snap["ahead_hits"], snap["generations"]) == (1, 1, 1)
