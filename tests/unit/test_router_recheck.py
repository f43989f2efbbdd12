"""When a request's chain comes to a backend, the breaker gate is asked again (Router._opened):
backends whose circuit opened since the plan are skipped then, and the backends left after the
one tried are counted as they stand now. Each failed with the first version of the re-check,
which counted them as planned (helper-95's attack, session 30)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mlxd.config import decode, merge
from mlxd.errors import AllFailed, ServerError
from mlxd.router import Router
from mlxd.types import Backend, Delta, Done, Event, Request

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]
Step = Event | BaseException | asyncio.Event | float


class Scripted(Backend):
    def __init__(self, name: str, *scripts: list[Step], is_local: bool = False) -> None:
        self.name, self.is_local = name, is_local
        self.scripts = list(scripts)
        self.requests: list[Request] = []

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        for step in script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, asyncio.Event):
                await step.wait()
            elif isinstance(step, float):
                await asyncio.sleep(step)
            else:
                yield step

    async def close(self) -> None:
        pass


def answer(text: str) -> list[Step]:
    return [Delta(text), Done("stop", 3, 1, "m")]


def router_of(*bs: Scripted, timeouts: dict[str, float] | None = None, **routing: Any) -> Router:
    names = [b.name for b in bs]
    raw: dict[str, Any] = {
        "backends": {
            b.name: {"base_url": "http://127.0.0.1:9", "model": "m"} for b in bs if not b.is_local
        },
        "routing": {"cloud": True, "chat": names, "inline": names, **routing},
    }
    return Router(decode(merge(raw, {"timeouts": timeouts or {}})), {b.name: b for b in bs})


BOOM = ServerError("boom", 500)


async def test_next_to_last_gets_whole_budget_when_the_last_is_skipped_by_the_recheck() -> None:
    # chain x -> b -> c, all closed at plan. While x is tried, c's circuit opens (other
    # requests). x fails; b is now the last backend the request will try: it gets the whole
    # budget, not first_token_s as if c still followed (it timed out, c was skipped: AllFailed,
    # though b answers in 0.3 s).
    gate = asyncio.Event()
    x = Scripted("x", [gate, BOOM])
    b = Scripted("b", [0.3, *answer("b")])
    c = Scripted("c", answer("c"))
    r = router_of(x, b, c, timeouts={"first_token_s": 0.1, "total_s": 5.0})
    run = asyncio.ensure_future(r.run(Request("chat")))
    while not x.requests:
        await asyncio.sleep(0)
    r.breakers.failed("c", BOOM, 1, 30.0)  # c opens meanwhile (another request's failure)
    assert r.backend_states()["c"] == "cooldown"
    gate.set()
    try:
        out = await run
    except AllFailed as e:
        pytest.fail(f"AllFailed: {[(a.backend, a.error) for a in e.attempts]}")
    assert out.backend == "b"


async def test_a_late_backend_gets_all_of_the_bound_when_the_one_after_it_is_skipped() -> None:
    # inline, chain x -> b -> c, b late for inline requests (gets a share of the bound when a
    # backend follows). c opens while x runs. b gets all that is left of the bound, not half
    # as if c still followed (it missed that half, and c was skipped: nothing, though b
    # answers well within the bound).
    import time

    gate = asyncio.Event()
    x = Scripted("x", [gate, BOOM])
    b = Scripted("b", [0.6, Delta("b\n"), Done("stop", 3, 1, "m")])
    c = Scripted("c", answer("c\n"))
    r = router_of(x, b, c, timeouts={"inline_first_token_s": 5.0, "total_s": 5.0})
    r.breakers.late["b"] = time.monotonic() + 30
    req = Request("inline", deadline=time.monotonic() + 1.0)  # type: ignore[call-arg]
    run = asyncio.ensure_future(r.run(req))
    while not x.requests:
        await asyncio.sleep(0)
    r.breakers.failed("c", BOOM, 1, 30.0)
    gate.set()
    try:
        out = await run
    except AllFailed as e:
        pytest.fail(f"AllFailed: {[(a.backend, a.error) for a in e.attempts]}")
    assert out.backend == "b"


async def test_an_empty_inline_answer_is_not_dropped_for_a_backend_the_recheck_skips() -> None:
    # b answers, with nothing to show: its empty Outcome is the answer, not set aside ("no
    # answer text") for c, which the re-check skips (that was AllFailed: the engine counted an
    # error, "the generation failed").
    import time

    gate = asyncio.Event()
    x = Scripted("x", [gate, BOOM])
    b = Scripted("b", [Delta("   "), Done("stop", 3, 1, "m")])
    c = Scripted("c", answer("c\n"))
    r = router_of(x, b, c)
    req = Request("inline", deadline=time.monotonic() + 1.0)  # type: ignore[call-arg]
    run = asyncio.ensure_future(r.run(req))
    while not x.requests:
        await asyncio.sleep(0)
    r.breakers.failed("c", BOOM, 1, 30.0)
    gate.set()
    try:
        out = await run
    except AllFailed as e:
        pytest.fail(f"AllFailed: {[(a.backend, a.error) for a in e.attempts]}")
    assert out.backend == "b"
