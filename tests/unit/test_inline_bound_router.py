"""The router's hard bound for inline requests (issue #17 item 3) and the prefill-only rule
(max_tokens == 0 reaches the backend, issue #17 item 6), on in-memory backends: every assert is
on events, attempts and breaker states, never on how long something took (the bound is a few
ms; a test that hung until `total_s` would hit the test timeout instead)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from mlxd.errors import AllFailed, ConnectError, Timeout
from mlxd.types import Delta, Event, Request

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
    # as outOfTime, a dead cloud backend showed no error at all (found by attacking it). It
    # is the inline bound's, not the backend's health: its circuit stays closed for chat.
    cloud = Scripted("cloud", [asyncio.Event()])
    router = make_router(cloud, timeouts=LONG, breaker_failures=1)
    with pytest.raises(AllFailed) as failed:
        await router.run(inline())  # type: ignore[arg-type]
    assert [x.timed_out for x in failed.value.attempts] == [False]
    assert not failed.value.out_of_time
    assert router.backend_states()["cloud"] == "ok"


async def test_a_cloud_backend_late_for_inline_leaves_the_local_model_half_the_bound() -> None:
    # inline_first_token_s (1.5 s by default) as long as inline.max_ms (1,500 by default): a
    # hung cloud backend was waited for until the bound and the local model after it never
    # asked: every answer empty while it sat idle (attack, session 25). Once late, it gets
    # half of the bound for its first token; its circuit stays closed (chat keeps it).
    cloud = Scripted("cloud", [asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG, breaker_failures=1)
    with pytest.raises(AllFailed) as first:  # the whole bound: it might have answered
        await router.run(inline(200))  # type: ignore[arg-type]
    assert first.value.attempts[1].error.startswith("skipped: the inline time bound")
    for _ in range(3):
        out = await router.run(inline(200))  # type: ignore[arg-type]
        assert (out.text, out.backend) == ("ok", "local")
        assert out.attempts[0].error.startswith("timeout: no answer within its share")
    assert router.backend_states()["cloud"] == "ok" and cloud.closed == 4


async def test_a_slow_but_healthy_cloud_backend_keeps_the_whole_bound() -> None:
    # A first token at 0.6 of the bound (a large hosted model at the defaults: ~0.9 s of
    # 1.5 s) is in time: a share cut from the start dropped it for every inline request and
    # opened its circuit for chat too (attack, session 25).
    cloud = Scripted("cloud", [0.12, *answer("c")])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG, breaker_failures=1)
    for _ in range(3):
        out = await router.run(inline(200))  # type: ignore[arg-type]
        assert (out.text, out.backend) == ("c", "cloud")
    assert local.requests == []


async def test_a_late_mark_ends_with_the_cooldown_or_a_reset() -> None:
    hung, slow = [asyncio.Event()], [0.12, *answer("c")]
    cloud = Scripted("cloud", hung, slow, slow)
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG, breaker_cooldown_s=0.3)
    with pytest.raises(AllFailed):
        await router.run(inline(200))  # type: ignore[arg-type]
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert out.backend == "local"  # late: cut at 100 ms, before its answer at 120
    await asyncio.sleep(0.35)
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert out.backend == "cloud"  # the mark ended: the whole bound, and it made it
    assert not router.breakers.late_for_inline("cloud")
    # A new endpoint or key (Router.update, setApiKey) starts with the whole bound at once.
    router.breakers.mark_late("cloud", 600.0, router.breakers.epoch("cloud"))
    router.reset("cloud")
    assert not router.breakers.late_for_inline("cloud")


async def test_an_answer_in_time_does_not_end_the_late_mark() -> None:
    # A provider that hung every other request: each quick answer cleared the mark, so each
    # hang had the whole bound again and came back empty (5 of 9; attack, session 25).
    hung, fast = [asyncio.Event()], answer("c")
    cloud = Scripted("cloud", hung, fast, hung, fast, hung, fast)
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    with pytest.raises(AllFailed):
        await router.run(inline(200))  # type: ignore[arg-type]
    got = [(await router.run(inline(200))).backend for _ in range(5)]  # type: ignore[arg-type]
    assert got == ["cloud", "local", "cloud", "local", "cloud"]


async def test_a_thinking_provider_is_late_until_it_answers() -> None:
    # Reasoning streamed until the bound, the answer after it: the reasoning counted as the
    # first token, every inline answer was empty and the local model never asked (attack,
    # session 25). For chat, reasoning still shows the backend alive (no first-token cut).
    # (The inline side: test_whitespace_or_inline_reasoning_is_no_first_token[reasoning].)
    local = Scripted("local", answer("ok"), is_local=True)
    slow_thinker = Scripted(
        "cloud", [*(Delta("r", reasoning=True) for _ in range(3)), 0.1, *answer("c")]
    )
    timeouts = {**LONG, "first_token_s": 0.05}
    out = await make_router(slow_thinker, local, timeouts=timeouts).run(chat())  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("c", "cloud")


async def test_the_backends_own_first_token_limit_still_falls_back() -> None:
    cloud = Scripted("cloud", [asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    timeouts = {**LONG, "inline_first_token_s": 0.04}
    out = await make_router(cloud, local, timeouts=timeouts).run(inline(200))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")
    assert out.attempts[0].error == "timeout: no token within 40 ms"


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


class Flood(Scripted):
    """A provider whose next delta is always in the buffer (one character deltas faster than
    they are read): its stream never suspends, for `seconds` of wall time, then ends."""

    def __init__(self, seconds: float, reasoning: bool = False) -> None:
        super().__init__("cloud", [])
        self.seconds = seconds
        self.reasoning = reasoning
        self.finished = False
        self.sent = 0

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        until = time.monotonic() + self.seconds
        try:
            while time.monotonic() < until:
                self.sent += 1
                yield Delta("x", reasoning=self.reasoning)
            self.finished = True
            yield done(self.sent)
        finally:
            self.closed += 1


async def test_a_flood_of_deltas_is_cut_at_the_bound() -> None:
    # The timeout fires only when the stream waits; one that never does ran past the bound to
    # its end (attack, session 25: 8 floods at inline.max_ms 400 answered after 675 ms).
    flood = Flood(seconds=5.0)
    router = make_router(flood, timeouts=LONG, max_tokens=1_000_000)  # the bound, not max_tokens
    out = await router.run(inline(100))  # type: ignore[arg-type]
    assert out.finish_reason == "length" and not flood.finished and flood.closed == 1
    assert out.text and set(out.text) == {"x"}


async def test_a_flood_of_deltas_lets_other_requests_run() -> None:
    flood = Flood(seconds=1.0)
    router = make_router(flood, timeouts=LONG)
    seen: list[bool] = []

    async def beside() -> None:
        while flood.sent == 0:  # the flood has begun
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(flood.finished)

    other = asyncio.create_task(beside())
    await router.run(chat())  # type: ignore[arg-type]
    await other
    assert seen == [False]  # it ran while the flood went on, not after it


async def test_a_provider_past_max_tokens_is_cut_there() -> None:
    # Every delta holds at least one token: a stream with more deltas than max_tokens ignores
    # it; without this, a flood ran on to the time budget (chat: total_s, 120 s).
    flood = Flood(seconds=5.0)
    out = await make_router(flood, timeouts=LONG).run(chat(max_tokens=50))  # type: ignore[arg-type]
    assert (out.text, out.finish_reason, out.completion_tokens) == ("x" * 50, "length", 50)
    assert not flood.finished and flood.closed == 1
    compliant = Scripted("cloud", answer(*"x" * 50))  # exactly max_tokens: its own Done
    out = await make_router(compliant, timeouts=LONG).run(chat(max_tokens=50))  # type: ignore[arg-type]
    assert (out.text, out.finish_reason, out.completion_tokens) == ("x" * 50, "stop", 50)
    # Reasoning is not counted: some providers leave it out of max_tokens (15 reasoning
    # deltas then 10 of answer at max_tokens 20 came back cut to 5; attack, session 25).
    thinking = [*(Delta(f"r{i}", reasoning=True) for i in range(15)), *answer(*"y" * 10)]
    reasoner = Scripted("cloud", thinking)
    out = await make_router(reasoner, timeouts=LONG).run(chat(max_tokens=20))  # type: ignore[arg-type]
    assert (out.text, out.finish_reason) == ("y" * 10, "stop")
    # A local model's deltas need not be tokens (stop text held back then flushed, reasoning
    # split off): its own max_tokens holds, the router does not count for it.
    local = Scripted("local", answer(*"x" * 51, tokens=50), is_local=True)
    out = await make_router(local, timeouts=LONG).run(chat(max_tokens=50))  # type: ignore[arg-type]
    assert (out.text, out.finish_reason) == ("x" * 51, "stop")


async def test_a_chat_flooded_with_reasoning_is_cut_at_its_cap() -> None:
    # Reasoning is left out of max_tokens, so a provider flooding it ran to total_s: 19,018
    # reasoning notifications (5 MB) in 6 s, ~100 MB at the default 120 s (attack, session 26).
    from mlxd.router.run import MAX_REASONING_DELTAS

    flood = Flood(seconds=20.0, reasoning=True)
    thoughts: list[str] = []
    router = make_router(flood, timeouts=LONG)
    out = await router.run(chat(max_tokens=50), on_reasoning=lambda t, _: thoughts.append(t))  # type: ignore[arg-type]
    assert (out.text, out.finish_reason) == ("", "length")
    assert len(thoughts) == MAX_REASONING_DELTAS and not flood.finished


# --- attack on the late mark, session 26 ---------------------------------------------------
async def test_a_late_mark_leaves_chats_own_first_token_timeouts_counted() -> None:
    # The share flag was set for every kind of request: a chat's first_token_s timeout was
    # reported as "its share of inline.max_ms" and never opened the circuit (every chat
    # waited first_token_s for as long as the mark lasted).
    cloud = Scripted("cloud", [asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    timeouts = {**LONG, "first_token_s": 0.05}
    router = make_router(cloud, local, timeouts=timeouts, breaker_failures=1)
    router.breakers.mark_late("cloud", 600.0, router.breakers.epoch("cloud"))
    out = await router.run(chat())  # type: ignore[arg-type]
    assert out.backend == "local"
    assert out.attempts[0].error == "timeout: no token within 50 ms"
    assert router.backend_states()["cloud"] == "cooldown"


async def test_an_attempt_from_before_a_reset_marks_nothing() -> None:
    # An inline request hanging at the old endpoint when a reload (or a new key) reset the
    # backend marked the new, healthy one late when its bound passed.
    router = make_router(Scripted("cloud", [asyncio.Event()]), timeouts=LONG)
    await hung_inline_request(router, lambda: router.reset("cloud"))
    assert not router.breakers.late_for_inline("cloud")


async def hung_inline_request(router: Any, meanwhile: Any) -> None:
    """An inline request whose first backend hangs past its bound (nothing answers),
    `meanwhile()` called 50 ms in."""
    task = asyncio.create_task(router.run(inline(200)))
    await asyncio.sleep(0.05)
    meanwhile()
    with pytest.raises(AllFailed):
        await task


async def test_a_cut_at_the_share_never_renews_the_mark() -> None:
    # A share cut landing just after the mark ended marked the backend for a whole new
    # cooldown: under steady typing it stayed late for good (0 of 19 requests reached it).
    cloud = Scripted("cloud", [asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    router.breakers.mark_late("cloud", 600.0, router.breakers.epoch("cloud"))
    task = asyncio.create_task(router.run(inline(200)))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    router.breakers.late["cloud"] = time.monotonic()  # the mark ends during its share
    out = await task
    assert out.backend == "local"
    assert not router.breakers.late_for_inline("cloud")


@pytest.mark.parametrize(
    "first",
    [
        pytest.param([Delta("  "), Delta("\n"), Delta("\t\n")], id="whitespace"),
        pytest.param([Delta("<think>"), Delta("let me see")], id="inline-think-tags"),
        pytest.param([Delta("hmm", reasoning=True) for _ in range(3)], id="reasoning"),
    ],
)
async def test_whitespace_or_inline_reasoning_is_no_first_token(first: list[Delta]) -> None:
    # Spaces and newlines, or a thinking model's <think> in the content (no reasoning
    # parser), counted as the first token: every answer empty at the bound, never late,
    # the local model never asked.
    cloud = Scripted("cloud", [*first, asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    with pytest.raises(AllFailed):
        await router.run(inline(200))  # type: ignore[arg-type]
    assert router.breakers.late_for_inline("cloud")
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")


async def test_a_stream_stalled_mid_line_is_late_and_the_next_backend_finishes_it() -> None:
    # One token, then silence: the bound cut a piece of a line (never shown), and it was
    # never late. A late backend's share is for a whole line; what it sent is continued.
    cloud = Scripted("cloud", [Delta("ret"), asyncio.Event()])
    local = Scripted("local", answer("urn x"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ret", "cloud")
    assert router.breakers.late_for_inline("cloud")
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("return x", "local")
    assert local.requests[-1].assistant_prefix.endswith("ret")


async def test_a_whole_line_in_the_share_is_the_late_backends_answer() -> None:
    cloud = Scripted("cloud", [asyncio.Event()], [Delta("a = 1\n"), Delta("b"), asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    with pytest.raises(AllFailed):
        await router.run(inline(200))  # type: ignore[arg-type]
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("a = 1\nb", "cloud")
    assert local.requests == []


async def test_a_second_cloud_is_not_late_for_the_time_the_first_took() -> None:
    # [hung c1, c2 answering at 0.55 of the bound, local]: c1 late took half the bound, c2
    # missed the rest and was marked late too (2 empty answers, then c2 cut to a quarter).
    # A late backend now shares the bound equally with those after it, and only the first
    # backend tried, with all of the bound, is marked.
    c1 = Scripted("c1", [asyncio.Event()])
    c2 = Scripted("c2", [0.22, *answer("c")])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(c1, c2, local, timeouts=LONG)
    with pytest.raises(AllFailed):
        await router.run(inline(400))  # type: ignore[arg-type]
    assert router.breakers.late_for_inline("c1")
    for _ in range(2):
        out = await router.run(inline(400))  # type: ignore[arg-type]
        assert (out.text, out.backend) == ("c", "c2")
    assert not router.breakers.late_for_inline("c2")


async def test_a_reload_with_a_shorter_cooldown_shortens_the_mark() -> None:
    cloud = Scripted("cloud", answer("c"))
    router = make_router(cloud, timeouts=LONG, breaker_cooldown_s=600.0)
    router.breakers.mark_late("cloud", 600.0, router.breakers.epoch("cloud"))
    shorter = make_router(cloud, timeouts=LONG, breaker_cooldown_s=0.0)
    router.update(shorter.config, {"cloud": cloud})  # the same backend: kept, not reset
    assert not router.breakers.late_for_inline("cloud")


# --- second attack on the late mark, session 26 --------------------------------------------
async def test_a_whole_line_held_by_the_fence_filter_is_whole() -> None:
    # The fence filter holds every line's newline until the next line shows it closes no
    # fence: a cloud that sent one whole line and paused was marked late, and a late one's
    # line cut at its share and continued without its newline ("x = 1 des ...").
    cloud = Scripted("cloud", [Delta("x = 1\n"), asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text.rstrip("\n"), out.backend) == ("x = 1", "cloud")
    assert not router.breakers.late_for_inline("cloud")
    router.breakers.mark_late("cloud", 600.0, router.breakers.epoch("cloud"))
    out = await router.run(inline(200))  # type: ignore[arg-type]
    assert (out.text.rstrip("\n"), out.backend) == ("x = 1", "cloud")  # its line, in its share
    assert local.requests == []


async def test_a_continuation_gets_the_held_newline_in_its_prefix_and_the_answer() -> None:
    c1 = Scripted("c1", [Delta("# note\n"), ConnectError("reset")])
    c2 = Scripted("c2", answer("z = 2"))
    out = await make_router(c1, c2, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("# note\nz = 2", "c2")
    assert c2.requests[-1].assistant_prefix.endswith("# note\n")


async def test_reasoning_streamed_before_a_cut_is_no_part_of_max_tokens() -> None:
    # 150 reasoning deltas then a dropped connection at maxTokens 100: counted as 150 cut
    # tokens, the answer came back empty ("length") and the next backend was never asked.
    cut = [*(Delta("r", reasoning=True) for _ in range(150)), ConnectError("reset")]
    cloud = Scripted("cloud", cut)
    local = Scripted("local", answer("ok"), is_local=True)
    out = await make_router(cloud, local, timeouts=LONG).run(chat(max_tokens=100))  # type: ignore[arg-type]
    assert (out.text, out.backend, out.finish_reason) == ("ok", "local", "stop")
    assert local.requests[-1].max_tokens == 100


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(answer("\n\n"), id="whitespace"),
        pytest.param([Delta("hmm", reasoning=True), done(1)], id="reasoning"),
        pytest.param(answer("<think>", "hmm", "</think>"), id="inline-think"),
    ],
)
async def test_an_inline_answer_with_no_text_falls_back_while_time_is_left(script: list) -> None:
    cloud = Scripted("cloud", script)
    local = Scripted("local", answer("ok"), is_local=True)
    out = await make_router(cloud, local, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")
    assert out.attempts[0].error == "no answer text (reasoning or whitespace only)"


async def test_a_reload_keeps_marks_of_backends_it_did_not_change() -> None:
    # Every reload resets the local backends, which ended any mark an attempt in flight was
    # about to set; and a cloud rebuilt for another timeout lost its mark.
    cloud = Scripted("cloud", [asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    router = make_router(cloud, local, timeouts=LONG)
    same = {"cloud": cloud, "local": local}  # the same settings
    await hung_inline_request(router, lambda: router.update(router.config, same))
    assert router.breakers.late_for_inline("cloud")
    rebuilt = Scripted("cloud", answer("c"))
    cloud.cfg = rebuilt.cfg = router.config.backends["cloud"]  # type: ignore[attr-defined]
    router.update(router.config, {"cloud": rebuilt, "local": local})
    assert router.breakers.late_for_inline("cloud")
    moved = Scripted("cloud", answer("c"))
    moved.cfg = msgspec.structs.replace(rebuilt.cfg, base_url="http://127.0.0.1:8")  # type: ignore[attr-defined]
    router.update(router.config, {"cloud": moved, "local": local})
    assert not router.breakers.late_for_inline("cloud")  # a new endpoint: the whole bound


# --- third attack, session 26 ----------------------------------------------------------------
async def test_an_opening_fence_alone_is_no_first_token() -> None:
    # The held text counted a possible opening fence (```python, no newline yet) as answer:
    # a chat model opening its answer with a fence and stalling was never given up on.
    c1 = Scripted("c1", [Delta("```python"), asyncio.Event()])
    local = Scripted("local", answer("ok"), is_local=True)
    timeouts = {**LONG, "inline_first_token_s": 0.05}
    out = await make_router(c1, local, timeouts=timeouts).run(inline(400))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")
    assert local.requests[-1].assistant_prefix == ""  # not the failed one's fence
    ended = Scripted("c1", answer("```python"))  # and one that ends there has no answer text
    out = await make_router(ended, local, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("ok", "local")


async def test_an_answer_a_stop_ended_at_once_is_the_answer() -> None:
    # Mid-line (stop "\n") a model answering "\n..." says there is nothing to add: the next
    # backend was asked anyway, its answer thrown away (the filter had stopped).
    c1 = Scripted("c1", answer("\nz = 9\n"))
    c2 = Scripted("c2", answer("y"))
    request = chat(kind="inline", stop=["\n"], max_time_s=0.4, deadline=time.monotonic() + 0.4)
    out = await make_router(c1, c2, timeouts=LONG).run(request)  # type: ignore[arg-type]
    assert (out.text, out.backend) == ("", "c1") and c2.requests == []


class Keys:
    """One known key, as the key store shows it to the redactor."""

    KEY = "sk-attack86-0123456789abcdef"
    secret_pattern = re.compile(re.escape(KEY))

    def secret_forms(self) -> list[str]:
        return [self.KEY]


async def test_a_cut_answers_held_text_reaches_a_cloud_continuation_without_a_key() -> None:
    c1 = Scripted("c1", [Delta("```" + Keys.KEY), ConnectError("reset")])
    c2 = Scripted("c2", answer("x = 1"))
    router = make_router(c1, c2, timeouts=LONG)
    router.secrets = Keys()
    out = await router.run(inline(400))  # type: ignore[arg-type]
    assert Keys.KEY not in c2.requests[-1].assistant_prefix and Keys.KEY not in out.text


@pytest.mark.parametrize("cut", [False, True])
async def test_a_crlf_closing_fence_split_before_its_newline_closes(cut: bool) -> None:
    # The answer's own fence, closed by a CRLF line that arrives before its newline.
    fence = [Delta("```python\r\n"), Delta("x = 1\r\n"), Delta("```\r")]
    rest = [Delta("\n"), Delta("tail\n"), done(4)]
    if cut:
        c1 = Scripted("c1", [*fence, ConnectError("reset")])
        c2 = Scripted("c2", rest)
        out = await make_router(c1, c2, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    else:
        c1 = Scripted("c1", [*fence, *rest])
        out = await make_router(c1, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert out.text.rstrip("\r\n") == "x = 1"


async def test_a_cloud_completion_cut_while_holding_maybe_reasoning_drops_it() -> None:
    # Released as answer at a cut (tried in this session), real reasoning became code:
    # "The user wants a function f. Let medef f(): ..." (attack, session 26). It is dropped:
    # the next backend continues from what was emitted.
    c1 = Scripted("c1", [Delta("The user wants a function f. Let me"), ConnectError("reset")])
    c2 = Scripted("c2", answer("I see.</think>\n\n", "def f():\n    pass\n"))
    router = make_router(c1, c2, timeouts=LONG, complete=["c1", "c2"])
    out = await router.run(chat(kind="complete", max_tokens=64))  # type: ignore[arg-type]
    assert out.text == "def f():\n    pass\n"
    assert c2.requests[-1].assistant_prefix == ""


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(answer("```python\n"), id="fence-then-end"),
        pytest.param(answer("```python\n", "  \n"), id="fence-and-whitespace"),
        pytest.param([Delta("```python\n"), ConnectError("reset")], id="fence-then-cut"),
    ],
)
async def test_a_fence_the_failed_backend_opened_is_not_the_next_ones_content(first: list) -> None:
    # The first backend's opening fence (no text after it) stayed open: the next one's own
    # fence became content ("```python\nx = 1"), or its bare ``` closed the answer at once;
    # whitespace after it started the ghost text with a blank line.
    c1 = Scripted("c1", first)
    c2 = Scripted("c2", answer("```python\n", "x = 1\n", "```\n"))
    out = await make_router(c1, c2, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert (out.text.rstrip("\n"), out.backend) == ("x = 1", "c2")
    assert c2.requests[-1].assistant_prefix == ""


async def test_a_crlf_closing_fence_takes_its_carriage_return() -> None:
    c1 = Scripted("c1", answer("```python\r\n", "x = 1\r\n", "```\r\n"))
    out = await make_router(c1, timeouts=LONG).run(inline(400))  # type: ignore[arg-type]
    assert out.text == "x = 1"


async def test_text_held_as_maybe_reasoning_counts_as_streamed() -> None:
    # A 429 after a cloud complete's first text (held while a </think> may come) was retried:
    # the retry's text came after the first's, "x = 1\nx = 1\ny\n" (attack, session 26).
    from mlxd.errors import RateLimited

    c1 = Scripted(
        "c1", [Delta("x = 1\n"), RateLimited("slow down", 429, 0.0)], answer("x = 1\n", "y\n")
    )
    c2 = Scripted("c2", answer("z\n"))
    router = make_router(c1, c2, timeouts=LONG, complete=["c1", "c2"])
    out = await router.run(chat(kind="complete", max_tokens=64))  # type: ignore[arg-type]
    assert "x = 1\nx = 1" not in out.text and len(c1.requests) == 1


# --- background work's time is not the backend's health -----------------------------------
# Work ahead (rest jobs, reranking's samples) runs at background priority, held back by
# interactive requests by design and bounded by timeouts.total_s alone: four samples that
# outlasted it opened the local model's circuit, and the next interactive request went to the
# cloud (helper-92, session 28). One that streamed nothing in all that time is a hung model
# (the only sign of one on the inline path, whose own bound never counts: helper-93), and its
# other failures count as before.
@pytest.mark.parametrize(
    ("priority", "script", "state"),
    [
        ("background", [Delta("x"), asyncio.Event()], "ok"),  # alive, past total_s
        ("background", [asyncio.Event()], "cooldown"),  # not a token in total_s: hung
        ("interactive", [Delta("x"), asyncio.Event()], "cooldown"),  # a user's request
        ("background", [Delta("x"), ConnectError("refused")], "cooldown"),  # broken
        ("background", [Delta("x"), Timeout("stalled", "idle")], "cooldown"),  # not total_s
    ],
)
async def test_only_a_background_request_that_streamed_spares_the_circuit_past_total_s(
    priority: str, script: list[object], state: str
) -> None:
    local = Scripted("local", script, is_local=True)  # type: ignore[arg-type]
    short = {**LONG, "total_s": 0.05}
    router = make_router(local, timeouts=short, breaker_failures=1)
    with pytest.raises(AllFailed) as failed:
        await router.run(chat(kind="inline", priority=priority))  # type: ignore[arg-type]
    assert len(failed.value.attempts) == 1
    assert router.backend_states()["local"] == state
