"""The router's hard bound for inline requests (issue #17 item 3) and the prefill-only rule
(max_tokens == 0 reaches the backend, issue #17 item 6), on in-memory backends: every assert is
on events, attempts and breaker states, never on how long something took (the bound is a few
ms; a test that hung until `total_s` would hit the test timeout instead)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlxd.errors import AllFailed, ConnectError

from .test_router_unit import Scripted, answer, chat, done, make_router

pytestmark = pytest.mark.timeout(30)
LONG = {"total_s": 600.0, "first_token_s": 600.0, "inline_first_token_s": 600.0}


def inline(ms: float = 50) -> object:
    return chat(kind="inline", max_time_s=ms / 1000, deadline=time.monotonic() + ms / 1000)


async def test_the_last_backend_is_abandoned_at_the_bound_without_opening_its_circuit() -> None:
    a = Scripted("local", [asyncio.Event()], is_local=True)  # never sends a token
    router = make_router(a, timeouts=LONG, breaker_failures=1)
    with pytest.raises(AllFailed) as failed:
        await router.run(inline())  # type: ignore[arg-type]
    assert [x.error for x in failed.value.attempts] == [
        "timeout: no token within inline.max_ms (50 ms)"
    ]
    assert a.closed == 1
    assert router.backend_states()["local"] == "ok"  # the request's bound, not the backend's health
    assert failed.value.out_of_time  # the inline engine's outOfTime, not one of its errors


async def test_a_cloud_backend_silent_until_the_bound_is_a_failure() -> None:
    # A hung connection (a dead provider, a stalled proxy) looks like a slow answer: counted
    # as outOfTime, a dead cloud backend showed no error at all (found by attacking it); and
    # the bound did not count against its circuit, so it was asked (and waited for) forever
    # (attack, session 25).
    cloud = Scripted("cloud", [asyncio.Event()])
    router = make_router(cloud, timeouts=LONG, breaker_failures=1)
    with pytest.raises(AllFailed) as failed:
        await router.run(inline())  # type: ignore[arg-type]
    assert [x.timed_out for x in failed.value.attempts] == [False]
    assert not failed.value.out_of_time
    assert router.backend_states()["cloud"] == "cooldown"


async def test_a_hung_cloud_backend_leaves_the_local_model_after_it_half_the_bound() -> None:
    # inline_first_token_s (1.5 s by default) as long as inline.max_ms (1,500 by default): the
    # cloud backend was waited for until the bound and the local model after it never asked:
    # every answer empty while it sat idle (attack, session 25).
    for first_token_s in (600.0, 0.04):  # the share applies; a shorter limit of its own too
        cloud = Scripted("cloud", [asyncio.Event()])
        local = Scripted("local", answer("ok"), is_local=True)
        timeouts = {**LONG, "inline_first_token_s": first_token_s}
        router = make_router(cloud, local, timeouts=timeouts, breaker_failures=2)
        out = await router.run(inline(200))  # type: ignore[arg-type]
        assert (out.text, out.backend) == ("ok", "local")
        assert out.attempts[0].backend == "cloud" and out.attempts[0].error.startswith(
            "timeout: no token within"
        )
        assert cloud.closed == 1 and len(local.requests) == 1


async def test_a_local_model_first_keeps_the_whole_bound() -> None:
    # Its time is its prefill (cut by the bound, it goes on in the background): no share.
    local = Scripted("local", [0.15, *answer("ok")], is_local=True)
    cloud = Scripted("cloud", answer("cloud"))
    out = await make_router(local, cloud, timeouts=LONG).run(inline(300))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")
    assert cloud.requests == []


async def test_a_backend_left_when_the_bound_is_spent_is_skipped_unasked() -> None:
    a = Scripted("local", [asyncio.Event()], is_local=True)
    b = Scripted("b", answer("ok"))
    with pytest.raises(AllFailed) as failed:
        await make_router(a, b, timeouts=LONG).run(inline())  # type: ignore[arg-type]
    assert [x.backend for x in failed.value.attempts] == ["local", "b"]
    assert (
        failed.value.attempts[1].error == "skipped: the inline time bound (inline.max_ms) was spent"
    )
    assert b.requests == []
    assert failed.value.out_of_time


async def test_a_failure_beside_the_bound_is_not_out_of_time() -> None:
    # A backend that fails (a connection refused) and one the bound ends: a failure, counted
    # with the inline engine's errors; one failing alone is too.
    a = Scripted("a", [ConnectError("refused")])
    b = Scripted("local", [asyncio.Event()], is_local=True)
    with pytest.raises(AllFailed) as failed:
        await make_router(a, b, timeouts=LONG).run(inline())  # type: ignore[arg-type]
    assert [x.timed_out for x in failed.value.attempts] == [False, True]
    assert not failed.value.out_of_time
    with pytest.raises(AllFailed) as alone:
        await make_router(a, timeouts=LONG).run(inline())  # type: ignore[arg-type]
    assert not alone.value.out_of_time


async def test_what_streamed_by_the_bound_is_the_answer() -> None:
    a = Scripted("a", [*answer("x = 1")[:-1], asyncio.Event()])
    out = await make_router(a, timeouts=LONG).run(inline())  # type: ignore[arg-type]
    assert (out.text, out.finish_reason) == ("x = 1", "length")


async def test_max_tokens_zero_reaches_the_backend() -> None:
    a = Scripted("a", [done(0, "length")])
    out = await make_router(a).run(chat(max_tokens=0))
    assert [r.max_tokens for r in a.requests] == [0]
    assert (out.text, out.completion_tokens, out.finish_reason) == ("", 0, "length")
