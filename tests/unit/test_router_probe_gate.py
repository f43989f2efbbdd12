"""The half-open gate lets one probe through (router/breakers.py, core.py `_try`), on
in-memory backends as tests/unit/test_router_unit.py. Each failed before session 30 (helper-94's
attack): the gate was applied only when a request planned its chain, and a forced request
during the cooldown took the probe."""

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

Step = Event | BaseException | asyncio.Event


class Scripted(Backend):
    def __init__(self, name: str, *scripts: list[Step]) -> None:
        self.name, self.is_local = name, False
        self.scripts = list(scripts)
        self.requests: list[Request] = []
        self.open = 0  # streams in flight now
        self.most = 0  # the most in flight at once

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            for step in script:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, asyncio.Event):
                    await step.wait()
                else:
                    yield step
        finally:
            self.open -= 1

    async def close(self) -> None:
        pass


def answer(text: str) -> list[Step]:
    return [Delta(text), Done("stop", 3, 1, "m")]


def router_of(*backends: Scripted, **routing: Any) -> Router:
    raw: dict[str, Any] = {
        "backends": {b.name: {"base_url": "http://127.0.0.1:9", "model": "m"} for b in backends},
        "routing": {"cloud": True, "chat": [b.name for b in backends], **routing},
    }
    return Router(decode(merge(raw, {})), {b.name: b for b in backends})


@pytest.mark.parametrize("last", [False, True])
async def test_requests_that_fail_over_together_are_not_all_probes_of_a_half_open_backend(
    last: bool,
) -> None:
    # a's circuit is half-open. Three chat requests (chain x -> a -> b) plan while no probe is
    # in flight, so a is not skipped in their plans; x fails them at the same moment, and each
    # goes on to a. Only the first may be the probe ("concurrent requests skip it",
    # docs/protocol.md): the others go on to b. Before, all three went through the gate
    # together. With a the last backend (x -> a), all three try it: as at planning, an open
    # circuit that would leave nothing to try is ignored (helper-95: one skipped there failed
    # a request a backend could have served).
    boom = ServerError("boom", 500)
    gate_x, gate_a = asyncio.Event(), asyncio.Event()
    x = Scripted("x", [gate_x, boom])
    a = Scripted("a", [boom], [boom], [gate_a, *answer("ok")])
    b = Scripted("b", answer("b"))
    chain = (x, a) if last else (x, a, b)
    r = router_of(*chain, breaker_failures=2, models={"only_a": ["a"]})
    for _ in range(2):  # open a's circuit
        with pytest.raises(AllFailed):
            await r.run(Request("chat"), model="only_a")
    assert r.backend_states()["a"] == "cooldown"
    r.breakers["a"].open_until -= r.config.routing.breaker_cooldown_s + 1  # half-open now
    runs = [asyncio.ensure_future(r.run(Request("chat"))) for _ in range(3)]
    while len(x.requests) < 3:
        await asyncio.sleep(0)
    gate_x.set()  # x fails all three at once: each goes on to a
    for _ in range(50):
        await asyncio.sleep(0)
    in_flight = a.open
    gate_a.set()
    outs = await asyncio.gather(*runs, return_exceptions=True)
    assert in_flight == (3 if last else 1), (in_flight, [getattr(o, "attempts", o) for o in outs])
    assert sorted(o.backend for o in outs) == (["a"] * 3 if last else ["a", "b", "b"])  # type: ignore[union-attr]


async def test_a_forced_request_in_cooldown_is_not_the_probe() -> None:
    # docs/protocol.md: "a forced request at the same backend ... neither holds nor frees" the
    # probe. Before, a forced (long) chat at `a` during its cooldown claimed it (claim_probe
    # looked at open_until, not at the cooldown's end): when the cooldown ended, every other
    # request skipped a with "probe in flight" for as long as the forced chat streamed.
    boom = ServerError("boom", 500)
    hold = asyncio.Event()
    a = Scripted("a", [boom], [boom], [hold, *answer("long chat")], answer("probe"))
    b = Scripted("b", answer("b"))
    r = router_of(a, b, breaker_failures=2)
    for _ in range(2):
        await r.run(Request("chat"))  # a fails, b answers: a's circuit opens
    assert r.backend_states()["a"] == "cooldown"
    forced = asyncio.ensure_future(r.run(Request("chat"), backend="a"))
    while len(a.requests) < 3:
        await asyncio.sleep(0)
    r.breakers["a"].open_until -= r.config.routing.breaker_cooldown_s + 1  # cooldown over
    out = await r.run(Request("chat"))
    hold.set()
    await forced
    assert out.backend == "a", out.attempts  # the probe: the forced chat was not it
