"""When a request's chain comes to a backend, the breaker gate is asked again (Router._opened):
backends whose circuit opened since the plan are skipped then, and the backends left after the
one tried are counted as they stand now. Each failed with the first version of the re-check,
which counted them as planned (helper-95's attack, session 30)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlxd.errors import AllFailed, ServerError
from mlxd.types import Delta, Done, Outcome, Request
from tests.unit.test_router_unit import Scripted, answer, make_router

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

BOOM = ServerError("boom", 500)


async def served_while_c_opens(
    b: Scripted, request: Request, late: bool = False, **timeouts: float
) -> Outcome:
    """`request` through the chain x -> b -> c, all closed when it plans (`late`: b is late
    for inline requests); c's circuit opens (another request's failure) while x is tried, and
    x then fails. The answer (a test failure when there is none)."""
    gate = asyncio.Event()
    x = Scripted("x", [gate, BOOM])
    r = make_router(x, b, Scripted("c", answer("c\n")), timeouts=timeouts)
    if late:
        r.breakers.late["b"] = time.monotonic() + 30
    run = asyncio.ensure_future(r.run(request))
    while not x.requests:
        await asyncio.sleep(0)
    r.breakers.failed("c", BOOM, 1, 30.0)
    assert r.backend_states()["c"] == "cooldown"
    gate.set()
    try:
        return await run
    except AllFailed as e:
        pytest.fail(f"AllFailed: {[(a.backend, a.error) for a in e.attempts]}")


async def test_next_to_last_gets_whole_budget_when_the_last_is_skipped_by_the_recheck() -> None:
    # x fails; b is now the last backend the request will try: it gets the whole budget, not
    # first_token_s as if c still followed (it timed out, c was skipped: AllFailed, though b
    # answers in 0.3 s).
    b = Scripted("b", [0.3, *answer("b")])
    out = await served_while_c_opens(b, Request("chat"), first_token_s=0.1, total_s=5.0)
    assert out.backend == "b"


async def test_a_late_backend_gets_all_of_the_bound_when_the_one_after_it_is_skipped() -> None:
    # inline, b late for inline requests (gets a share of the bound when a backend follows).
    # b gets all that is left of the bound, not half as if c still followed (it missed that
    # half, and c was skipped: nothing, though b answers well within the bound).
    b = Scripted("b", [0.6, Delta("b\n"), Done("stop", 3, 1, "m")])
    req = Request("inline", deadline=time.monotonic() + 1.0)  # type: ignore[call-arg]
    out = await served_while_c_opens(b, req, late=True, inline_first_token_s=5.0, total_s=5.0)
    assert out.backend == "b"


async def test_an_empty_inline_answer_is_not_dropped_for_a_backend_the_recheck_skips() -> None:
    # b answers, with nothing to show: its empty Outcome is the answer, not set aside ("no
    # answer text") for c, which the re-check skips (that was AllFailed: the engine counted an
    # error, "the generation failed").
    b = Scripted("b", [Delta("   "), Done("stop", 3, 1, "m")])
    req = Request("inline", deadline=time.monotonic() + 1.0)  # type: ignore[call-arg]
    out = await served_while_c_opens(b, req)
    assert out.backend == "b"
