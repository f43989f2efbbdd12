"""The router on in-memory backends: the chain, skip reasons, retries, the circuit breaker,
continuation after a mid-stream cut, max_tokens across it, and the `attempts` it reports.

`Scripted` is a real Backend (the interface in mlxd/types.py): each call to `stream` plays
the next script of Delta/Done events and typed errors. No process, no HTTP, no model; every
assert is on events and their order, never on how long something took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mlxd.config import decode, merge
from mlxd.errors import (
    AllFailed,
    BadRequest,
    RateLimited,
    ServerError,
    StreamCut,
    UnknownBackend,
    UnknownModel,
)
from mlxd.router import Router
from mlxd.types import Attempt, Backend, Delta, Done, Event, Held, Request

pytestmark = pytest.mark.timeout(30)

Step = Event | BaseException | asyncio.Event | float  # float: seconds to wait


def done(tokens: int = 1, reason: str = "stop") -> Done:
    return Done(reason, 3, tokens, "m")  # type: ignore[arg-type]


def rate_limited(retry_after: float | None) -> RateLimited:
    return RateLimited("slow down", 429, retry_after)


class Scripted(Backend):
    """Plays one script per call (the last one again when they run out); records each request
    and each stream the router closed."""

    def __init__(self, name: str, *scripts: list[Step], is_local: bool = False) -> None:
        self.name = name
        self.is_local = is_local
        self.scripts = list(scripts)
        self.requests: list[Request] = []
        self.closed = 0

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        try:
            for step in script:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, asyncio.Event):
                    await step.wait()  # hold here until the test lets go
                elif isinstance(step, float):
                    await asyncio.sleep(step)  # a backend slow to its first token
                else:
                    yield step
        finally:
            self.closed += 1

    async def close(self) -> None:
        pass


def answer(*parts: str, tokens: int | None = None) -> list[Step]:
    return [*(Delta(p) for p in parts), done(len(parts) if tokens is None else tokens)]


def make_router(
    *backends: Scripted, timeouts: dict[str, float] | None = None, **routing: Any
) -> Router:
    names = [b.name for b in backends]
    raw: dict[str, Any] = {
        "backends": {
            b.name: {"base_url": "http://127.0.0.1:9", "model": "m"}
            for b in backends
            if not b.is_local
        },
        "routing": {"cloud": True, "chat": names, "inline": names},
    }
    cfg = decode(merge(raw, {"routing": routing, "timeouts": timeouts or {}}))
    return Router(cfg, {b.name: b for b in backends}, on_status=lambda: statuses.append(1))


statuses: list[int] = []


@pytest.fixture(autouse=True)
def _clear_statuses() -> None:
    statuses.clear()


def chat(max_tokens: int | None = None, kind: str = "chat", **kw: Any) -> Request:
    return Request(kind, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


# --- the chain ----------------------------------------------------------------------------


async def test_the_first_backend_that_answers_serves_and_the_rest_are_not_called() -> None:
    a, b = Scripted("a", answer("hi", " there")), Scripted("b", answer("no"))
    deltas: list[tuple[str, str]] = []
    out = await make_router(a, b).run(chat(), on_delta=lambda t, n: deltas.append((t, n)))
    assert (out.text, out.backend, out.attempts) == ("hi there", "a", [])
    assert deltas == [("hi", "a"), (" there", "a")]
    assert b.requests == []
    assert a.closed == 1  # the stream is closed once its Done is read


async def test_a_failing_backend_falls_back_and_attempts_say_why() -> None:
    a = Scripted("a", [ServerError("boom", 500)])
    b = Scripted("b", answer("ok"))
    out = await make_router(a, b).run(chat())
    assert (out.text, out.backend) == ("ok", "b")
    assert out.attempts == [Attempt("a", "http 500: boom")]


async def test_all_failed_lists_every_attempt_in_chain_order() -> None:
    a = Scripted("a", [ServerError("boom", 500)])
    b = Scripted("b", [StreamCut("eof")])
    with pytest.raises(AllFailed) as err:
        await make_router(a, b).run(chat())
    assert err.value.attempts == [Attempt("a", "http 500: boom"), Attempt("b", "stream_cut: eof")]


async def test_a_forced_backend_has_no_fallback_and_an_unknown_one_is_refused() -> None:
    a = Scripted("a", [ServerError("boom", 500)])
    b = Scripted("b", answer("ok"))
    router = make_router(a, b)
    with pytest.raises(AllFailed):
        await router.run(chat(), backend="a")
    assert b.requests == []
    with pytest.raises(UnknownBackend, match="'zz'"):
        await router.run(chat(), backend="zz")


# --- skip reasons -------------------------------------------------------------------------


async def test_cloud_off_skips_cloud_backends_before_calling_them() -> None:
    cloud, local = Scripted("a", answer("leak")), Scripted("local", answer("ok"), is_local=True)
    out = await make_router(cloud, local, cloud=False).run(chat())
    assert out.backend == "local"
    assert out.attempts == [Attempt("a", "skipped: cloud backends are off (routing.cloud)")]
    assert cloud.requests == []


async def test_an_excluded_document_keeps_the_request_local() -> None:
    cloud, local = Scripted("a", answer("leak")), Scripted("local", answer("ok"), is_local=True)
    out = await make_router(cloud, local).run(chat(), documents=["file:///w/app/.env"])
    assert out.attempts == [Attempt("a", "skipped: file:///w/app/.env matches routing.exclude")]
    assert cloud.requests == []


async def test_a_chain_name_without_a_backend_is_skipped_as_not_configured() -> None:
    a, b = Scripted("a", answer("x")), Scripted("b", answer("ok"))
    router = make_router(a, b)
    del router.backends["a"]  # e.g. a backend whose construction failed
    out = await router.run(chat())
    assert out.attempts == [Attempt("a", "skipped: not configured")]


async def test_no_token_before_first_token_s_falls_back() -> None:
    never = asyncio.Event()
    a, b = Scripted("a", [never]), Scripted("b", answer("ok"))
    out = await make_router(a, b, timeouts={"first_token_s": 0.05}).run(chat())
    assert out.backend == "b"
    assert [x.error.split(" within ")[0] for x in out.attempts] == ["timeout: no token"]
    assert a.closed == 1  # the abandoned stream was closed


async def test_a_chat_held_for_an_inline_request_does_not_fall_back_for_the_wait() -> None:
    """A local model pausing a chat for an inline request (Held) moves its first-token limit
    by the pause's bound: the chat is not abandoned to the next backend for waiting."""
    paused = asyncio.Event()
    a = Scripted("local", [Held(30.0), paused, *answer("ok")], is_local=True)
    b = Scripted("b", answer("cloud"))
    asyncio.get_running_loop().call_later(0.3, paused.set)  # 6x the first-token limit
    out = await make_router(a, b, timeouts={"first_token_s": 0.05}).run(chat())
    assert (out.backend, out.text, out.attempts, b.requests) == ("local", "ok", [], [])


async def test_a_held_chat_still_falls_back_once_the_pause_bound_is_spent() -> None:
    never = asyncio.Event()
    a = Scripted("local", [Held(0.05), never], is_local=True)
    b = Scripted("b", answer("ok"))
    out = await make_router(a, b, timeouts={"first_token_s": 0.05}).run(chat())
    assert out.backend == "b"
    assert [x.error.split(" within ")[0] for x in out.attempts] == ["timeout: no token"]


# --- retries ------------------------------------------------------------------------------


async def test_429_with_retry_after_is_retried_on_the_same_backend() -> None:
    a = Scripted("a", [rate_limited(0.0)], answer("ok"))
    b = Scripted("b", answer("fallback"))
    out = await make_router(a, b).run(chat())
    assert (out.text, out.backend, out.attempts) == ("ok", "a", [])
    assert len(a.requests) == 2 and b.requests == []


async def test_retries_stop_at_max_retries_then_fall_back() -> None:
    a = Scripted("a", [rate_limited(0.0)])
    b = Scripted("b", answer("ok"))
    out = await make_router(a, b, max_retries=2).run(chat())
    assert len(a.requests) == 3  # one try and two retries
    assert (out.backend, out.attempts) == ("b", [Attempt("a", "http 429: slow down")])


async def test_a_retry_after_longer_than_the_first_token_limit_falls_back_at_once() -> None:
    a = Scripted("a", [rate_limited(3600.0)], answer("never"))
    b = Scripted("b", answer("ok"))
    out = await make_router(a, b).run(chat())
    assert len(a.requests) == 1 and out.backend == "b"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServerError("busy", 503, retry_after=0.0), True),
        (ServerError("busy", 503), True),  # 503 is "come back", backoff without Retry-After
        (ServerError("down", 502, retry_after=0.0), True),  # any 5xx that says when
        (ServerError("down", 500), False),  # a plain 5xx: the next backend is the better bet
    ],
)
async def test_5xx_is_retried_only_when_it_says_come_back(error: Exception, retried: bool) -> None:
    a = Scripted("a", [error], answer("ok"))
    b = Scripted("b", answer("fallback"))
    out = await make_router(a, b, max_retries=1).run(chat())
    assert (len(a.requests), out.backend) == ((2, "a") if retried else (1, "b"))


async def test_nothing_is_retried_once_tokens_were_streamed() -> None:
    a = Scripted("a", [Delta("par"), rate_limited(0.0)], answer("again"))
    b = Scripted("b", answer("tial"))
    out = await make_router(a, b).run(chat())
    assert len(a.requests) == 1
    assert (out.text, out.backend) == ("partial", "b")


# --- continuation after a mid-stream cut --------------------------------------------------


async def test_a_cut_answer_is_continued_by_the_next_backend_as_one_stream() -> None:
    a = Scripted("a", [Delta("Hello "), Delta("wor"), StreamCut("eof")])
    b = Scripted("b", answer("ld"))
    deltas: list[tuple[str, str]] = []
    out = await make_router(a, b).run(chat(), on_delta=lambda t, n: deltas.append((t, n)))
    assert out.text == "Hello world" == "".join(t for t, _ in deltas)
    assert deltas == [("Hello ", "a"), ("wor", "a"), ("ld", "b")]
    assert b.requests[0].assistant_prefix == "Hello wor"
    assert out.attempts == [Attempt("a", "stream_cut: eof after 9 chars streamed")]


async def test_a_continuation_asks_for_what_is_left_of_max_tokens() -> None:
    a = Scripted("a", [Delta("one "), Delta("two "), StreamCut("eof")])
    b = Scripted("b", answer("three", tokens=1))
    out = await make_router(a, b).run(chat(max_tokens=5))
    assert [r.max_tokens for r in a.requests + b.requests] == [5, 3]
    assert out.completion_tokens == 2 + 1  # the cut deltas count in the usage


async def test_a_cut_answer_already_at_max_tokens_ends_with_length_and_calls_no_one() -> None:
    a = Scripted("a", [Delta("a"), Delta("b"), StreamCut("eof")])
    b = Scripted("b", answer("more"))
    out = await make_router(a, b).run(chat(max_tokens=2))
    assert (out.text, out.finish_reason, out.backend) == ("ab", "length", "a")
    assert b.requests == []


async def test_max_lines_ends_the_answer_when_a_newline_completes_the_line() -> None:
    a = Scripted("a", [Delta("foo"), Delta("()\nbar"), Delta("never"), done()])
    out = await make_router(a).run(chat(kind="inline", max_lines=1))
    assert (out.text, out.finish_reason) == ("foo()\nbar", "stop")
    assert a.closed == 1  # the rest of the stream is closed, not drained


# --- circuit breaker ----------------------------------------------------------------------


async def failing_twice(router: Router) -> None:
    for _ in range(2):
        await router.run(chat())


async def test_the_breaker_opens_after_breaker_failures_and_skips_the_backend() -> None:
    a = Scripted("a", [ServerError("boom", 500)])
    b = Scripted("b", answer("ok"))
    router = make_router(a, b, breaker_failures=2)
    await failing_twice(router)
    assert statuses == [1]  # one status change: a's circuit opened
    assert router.backend_states()["a"] == "cooldown"
    out = await router.run(chat())
    assert out.attempts == [Attempt("a", "skipped: circuit open after repeated failures")]
    assert len(a.requests) == 2


async def test_an_open_breaker_is_tried_anyway_when_nothing_else_is_left() -> None:
    a = Scripted("a", [ServerError("boom", 500)], [ServerError("boom", 500)], answer("back"))
    router = make_router(a, breaker_failures=2)
    for _ in range(2):
        with pytest.raises(AllFailed):
            await router.run(chat())
    out = await router.run(chat())
    assert (out.text, len(a.requests)) == ("back", 3)


def cooldown_over(router: Router, name: str) -> None:
    """Move the end of the cooldown into the past: the breaker turns half-open, no waiting."""
    breaker = router.breakers[name]
    breaker.open_until -= router.config.routing.breaker_cooldown_s + 1


async def test_half_open_lets_one_probe_through_and_a_success_closes_the_circuit() -> None:
    release = asyncio.Event()
    a = Scripted(
        "a", [ServerError("boom", 500)], [ServerError("boom", 500)], [release, *answer("probe")]
    )
    b = Scripted("b", answer("ok"))
    router = make_router(a, b, breaker_failures=2)
    await failing_twice(router)
    cooldown_over(router, "a")
    probe = asyncio.create_task(router.run(chat()))
    while len(a.requests) < 3:  # the probe has reached a
        await asyncio.sleep(0)
    other = await router.run(chat())  # meanwhile: a is skipped, the probe is in flight
    assert other.attempts == [Attempt("a", "skipped: circuit half-open, probe in flight")]
    release.set()
    assert (await probe).backend == "a"
    assert router.backend_states()["a"] == "ok"
    assert statuses == [1, 1]  # opened, then closed


@pytest.mark.parametrize("end", ["cancelled", "bad request"])
async def test_only_the_probes_own_end_frees_the_probe(end: str) -> None:
    # Half-open: the probe P is in flight; a request forced to the backend (F) is tried
    # anyway, and ends first without a say on its health. Before, any attempt's end cleared
    # the flag: the next request went to the half-open backend as a second probe beside P.
    release, hold = asyncio.Event(), asyncio.Event()
    forced: list[Step] = [hold] if end == "cancelled" else [BadRequest("bad", 400)]
    fail = [ServerError("boom", 500)]
    a = Scripted("a", fail, fail, [release, *answer("probe")], forced, answer("second probe"))
    b = Scripted("b", answer("ok"))
    router = make_router(a, b, breaker_failures=2)
    await failing_twice(router)
    cooldown_over(router, "a")
    probe = asyncio.create_task(router.run(chat()))
    while len(a.requests) < 3:
        await asyncio.sleep(0)
    f = asyncio.create_task(router.run(chat(), backend="a"))
    while len(a.requests) < 4:
        await asyncio.sleep(0)
    if end == "cancelled":
        f.cancel()
    with pytest.raises(asyncio.CancelledError if end == "cancelled" else AllFailed):
        await f
    other = await router.run(chat())
    assert other.attempts == [Attempt("a", "skipped: circuit half-open, probe in flight")]
    assert (other.backend, len(a.requests)) == ("b", 4)
    release.set()
    assert (await probe).backend == "a"
    assert router.backend_states()["a"] == "ok"


def test_a_probe_is_freed_only_by_the_attempt_that_holds_it_even_after_a_reset() -> None:
    from mlxd.router.breakers import Breakers

    br, boom, bad = Breakers(lambda: None), ServerError("boom", 500), BadRequest("bad", 400)
    in_flight = "skipped: circuit half-open, probe in flight"
    br.failed("a", boom, 1, 0.0)  # open; a cooldown of 0: half-open at once
    old = br.claim_probe("a")
    assert old and br.claim_probe("a") == 0  # one probe at a time
    br.reset("a")  # a reload: the circuit closes while the old probe is still in flight
    br.failed("a", boom, 1, 0.0)
    new = br.claim_probe("a")
    assert new and new != old
    br.release_probe("a", old)  # the old attempt is cancelled
    br.failed("a", bad, 1, 0.0, probe=old)  # or ends without a say on the backend's health
    assert br.reason("a", time.monotonic()) == in_flight
    br.release_probe("a", new)
    assert br.reason("a", time.monotonic()) is None and br.claim_probe("a")


async def test_a_failed_probe_reopens_the_circuit_at_once() -> None:
    a = Scripted("a", [ServerError("boom", 500)])
    b = Scripted("b", answer("ok"))
    router = make_router(a, b, breaker_failures=2)
    await failing_twice(router)
    cooldown_over(router, "a")
    assert router.backend_states()["a"] == "ok"  # half-open
    out = await router.run(chat())
    assert (out.backend, len(a.requests)) == ("b", 3)  # the probe went to a and failed
    assert router.backend_states()["a"] == "cooldown"  # one failure is enough now


async def test_a_bad_request_does_not_count_against_the_breaker() -> None:
    a = Scripted("a", [BadRequest("bad", 400)])
    b = Scripted("b", answer("ok"))
    router = make_router(a, b, breaker_failures=1)
    for _ in range(3):
        await router.run(chat())
    assert len(a.requests) == 3 and router.backend_states()["a"] == "ok"


def test_resolve_maps_an_alias_or_a_served_model_and_refuses_the_rest() -> None:
    """Router.resolve (was App._resolve): an alias keeps its chain, a backend's model or name
    forces that backend, anything else is the client's mistake."""
    a, b = Scripted("a", answer("x")), Scripted("b", answer("y"))
    router = make_router(a, b, models={"fast": ["b", "a"]})
    assert router.resolve(None, None) == (None, None)
    assert router.resolve("fast", None) == ("fast", None)
    assert router.resolve("b", None) == (None, "b")
    assert router.resolve("b", "a") == (None, "a")  # an explicit backend wins
    with pytest.raises(UnknownModel, match=r"unknown model 'nope' \(known: \['fast'"):
        router.resolve("nope", None)
