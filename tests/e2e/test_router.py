"""The router end to end: the real daemon over stdio, real loopback fake providers, and the tiny
local model as the fallback target. Fallback triggers, retries, mid-stream continuation, the
circuit breaker and its status notifications, privacy rules, forced backends, model aliases and
the one time budget per request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import Session, _plain, chat_params, daemon, write_config
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import free_port

# The module's loop: one daemon (`shared`) serves the tests that use cloud_then_local as it is.
pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

KEY = "sk-test-router-5f0c2a9e7b1d4c36"
ENV = {"FAKE_KEY": KEY}
# A hang guard, not a speed bound: where the limit under test is an hour long, an answer within
# this many seconds can only come from the short limit (which answers well under one second).
HANG_GUARD_S = 30


# --- helpers ----------------------------------------------------------------------------------
def make_config(
    path: Path,
    model: Path,
    backends: dict[str, tuple[str, str]],
    routing: dict[str, Any],
    timeouts: dict[str, Any] | None = None,
    preload: bool = True,
) -> Path:
    """A config with the tiny local model and one cloud backend per (protocol, url)."""
    cfg: dict[str, Any] = {"local": {"model": str(model), "preload": preload}}
    cfg["backends"] = {
        name: {
            "protocol": protocol,
            "base_url": url,
            "api_key_env": "FAKE_KEY",
            "model": f"{name}-model",
        }
        for name, (protocol, url) in backends.items()
    }
    # A breaker that never opens unless a test asks for one: triggers must not interfere.
    cfg["routing"] = {"cloud": True, "breaker_failures": 1000, **routing}
    cfg["timeouts"] = timeouts or {}
    return write_config(path, cfg)


def cloud_then_local(
    tmp_path: Path, model: Path, url: str, timeouts: dict[str, Any] | None = None
) -> Path:
    """The common chain: chat tries an OpenAI-protocol cloud at `url`, then the local model."""
    return make_config(
        tmp_path / "c.toml",
        model,
        {"cloud": ("openai", url)},
        {"chat": ["cloud", "local"]},
        timeouts,
    )


@pytest_asyncio.fixture(loop_scope="module")
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as f:
        yield f


@pytest_asyncio.fixture(loop_scope="module")
async def fake2() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as f:
        yield f


def backends_of(s: Session, token: Any) -> list[str]:
    return [v["backend"] for v in s.progress.get(token, []) if isinstance(v, dict)]


def runs_of(s: Session, token: Any) -> list[tuple[str, str]]:
    """The streamed answer as (backend, text) runs: the deltas of one event-loop turn share a
    notification (server/progress_stream.py), so frames are not tokens."""
    runs: list[tuple[str, str]] = []
    for v in s.progress.get(token, []):
        if "delta" in v:
            if runs and runs[-1][0] == v["backend"]:
                runs[-1] = (v["backend"], runs[-1][1] + v["delta"])
            else:
                runs.append((v["backend"], v["delta"]))
    return runs


async def until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def ready(s: Session) -> None:
    await s.wait_status("ready", "degraded")


def generations(stats: dict[str, Any]) -> dict[str, int]:
    """Generations run so far by each local model (mlxd/stats counts from the daemon's start)."""
    return {name: e["generations"] for name, e in stats["local"].items()}


Shared = tuple[Session, FakeProvider]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_rig(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> AsyncIterator[Shared]:
    """cloud_then_local on one fake provider: one daemon for the tests that use that config
    as it is and need no fresh process."""
    async with FakeProvider(require_key=KEY) as fake:
        cfg = cloud_then_local(tmp_path_factory.mktemp("ctl"), tiny_model, fake.openai_url)
        async with daemon(cfg, env=ENV) as s:
            yield s, fake


@pytest_asyncio.fixture(loop_scope="module")
async def shared(shared_rig: Shared) -> AsyncIterator[Shared]:
    """The shared daemon and its fake, as if new (see tests/e2e/conftest.py's `cloud`)."""
    s, fake = shared_rig
    await fake.quiet()
    fake.reset()
    s.progress.clear()
    s.client.messages.clear()
    yield s, fake
    await fake.quiet()


# --- fallback triggers ------------------------------------------------------------------------
async def test_refused_cloud_is_served_by_local(tmp_path: Path, tiny_model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = cloud_then_local(tmp_path, tiny_model, url)
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=8))
        assert r.backend == "local"
        assert r.attempts[0].backend == "cloud" and r.attempts[0].error.startswith("connect")
        assert len(r.attempts) == 1
        assert "".join(s.deltas("t")) == r.text and r.text
        assert set(backends_of(s, "t")) == {"local"}


async def test_every_pre_token_failure_falls_back_without_retry(shared: Shared) -> None:
    """5xx, 401/403/404, malformed stream, a mid-stream error event and a stream that ends
    before its first token: each one upstream request, then local; the client sees one stream."""
    s, fake = shared
    triggers = [
        (Reply.status(500), "http 500"),
        (Reply.status(502, body="<html>Bad Gateway</html>"), "http 502"),
        (Reply.status(401), "http 401"),
        (Reply.status(403), "http 403"),
        (Reply.status(404), "http 404"),
        (Reply.malformed(after=0), "protocol"),
        (Reply.error_event("server_error", "The server had an error", after=0), "protocol"),
        (Reply.cut(after=0), "stream_cut"),
    ]
    await ready(s)
    for i, (reply, expected) in enumerate(triggers):
        fake.enqueue(reply)
        before = fake.request_count
        token = f"t{i}"
        r = await s.request("mlxd/chat", chat_params("hi", token=token, maxTokens=6))
        what = f"{reply.kind} {reply.code}"
        assert fake.request_count == before + 1, what  # no retry
        assert r.backend == "local", what
        assert [a.backend for a in r.attempts] == ["cloud"], what
        assert r.attempts[0].error.startswith(expected), (what, r.attempts[0].error)
        assert set(backends_of(s, token)) == {"local"}, what
        assert "".join(s.deltas(token)) == r.text, what
    # and with the cloud healthy again it serves
    r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
    assert r.backend == "cloud" and r.text == "Hello, world!" and r.attempts == []


async def test_hanging_cloud_falls_back_after_first_token_s(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """Silent before the headers, or after them: local serves once first_token_s is up."""
    cfg = cloud_then_local(tmp_path, tiny_model, fake.openai_url, {"first_token_s": 0.5})
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        for n, hang in enumerate([Reply.hang_before_headers(), Reply.hang_after_headers()], 1):
            fake.enqueue(hang)
            t0 = time.perf_counter()
            r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
            elapsed = time.perf_counter() - t0
            assert r.backend == "local", hang.kind
            assert r.attempts[0].backend == "cloud"
            assert r.attempts[0].error.startswith("timeout: no token within 500 ms")
            assert elapsed >= 0.5, hang.kind  # the error text says which limit ended it
            assert r.timings.firstTokenMs >= 500
            await fake.wait_disconnect(n)  # the abandoned HTTP stream was closed
            assert fake.request_count == n


async def test_inline_uses_inline_first_token_s(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"inline": ["cloud", "local"]},
        {"first_token_s": 3600, "inline_first_token_s": 0.4},
    )
    fake.default = Reply.hang_before_headers()
    uri = "file:///p/main.py"
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        s.client.text_document_did_open(
            T.DidOpenTextDocumentParams(
                T.TextDocumentItem(uri, "python", 1, "def add(a, b):\n    return ")
            )
        )
        t0 = time.perf_counter()
        # A cloud that never answers, first_token_s an hour: only the inline limit explains an
        # answer at all.
        async with asyncio.timeout(HANG_GUARD_S):
            await s.client.text_document_inline_completion_async(
                T.InlineCompletionParams(
                    context=T.InlineCompletionContext(
                        trigger_kind=T.InlineCompletionTriggerKind.Invoked
                    ),
                    text_document=T.TextDocumentIdentifier(uri),
                    position=T.Position(1, 11),
                )
            )
        assert time.perf_counter() - t0 >= 0.4
        assert fake.request_count == 1
        await fake.wait_disconnect()


async def test_one_line_inline_answer_stops_the_stream_after_its_line(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """Where one line is wanted (the end of a statement), the generation is stopped as soon as
    that line is complete: the stream is closed, not read to its end."""
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"inline": ["cloud"]},
    )
    # No time cap (inline.max_ms a minute): only the line rule can end the stream early.
    cfg.write_text(cfg.read_text() + "[inline]\nmax_ms = 60000\n")
    pieces = ["\n", "total", " += 1", "\n", "print(", "total)", "\n"] + ["# more\n"] * 20
    fake.default = Reply.trickle(pieces, interval_s=0.2)  # 5.4 s to stream it all
    uri = "file:///p/main.py"
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        s.client.text_document_did_open(
            T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "python", 1, "total = 0"))
        )
        result = await s.client.text_document_inline_completion_async(
            T.InlineCompletionParams(
                context=T.InlineCompletionContext(T.InlineCompletionTriggerKind.Automatic),
                text_document=T.TextDocumentIdentifier(uri),
                position=T.Position(0, 9),
            )
        )
        assert isinstance(result, T.InlineCompletionList)
        assert [i.insert_text for i in result.items] == ["\ntotal += 1"]
        await fake.wait_disconnect()
        assert fake.requests[0].disconnected  # closed before the fake sent all 27 pieces


# --- retries ----------------------------------------------------------------------------------
async def test_429_and_503_honour_retry_after_then_cloud_serves(shared: Shared) -> None:
    s, fake = shared
    await ready(s)
    for code in (429, 503):
        fake.reset()
        fake.enqueue(Reply.status(code, retry_after=0.6))
        t0 = time.perf_counter()
        r = await s.request("mlxd/chat", chat_params("hi", token=code, maxTokens=6))
        elapsed = time.perf_counter() - t0
        assert r.backend == "cloud" and r.text == "Hello, world!", code
        assert fake.request_count == 2, code  # exactly one retry
        assert elapsed >= 0.6, code  # waited as told
        assert r.attempts == []
        assert set(backends_of(s, code)) == {"cloud"}


async def test_503_without_retry_after_is_retried_with_backoff_but_500_is_not(
    shared: Shared,
) -> None:
    s, fake = shared
    await ready(s)
    fake.enqueue(Reply.status(503))
    r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
    assert r.backend == "cloud" and fake.request_count == 2  # busy: one retry, then served
    fake.reset()
    fake.enqueue(Reply.status(500))
    r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
    assert r.backend == "local" and fake.request_count == 1  # broken: straight to local


async def test_retry_after_beyond_first_token_s_falls_back_at_once(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    # A wait for the Retry-After (an hour), or until first_token_s (ten minutes), would outlast
    # the hang guard: an answer at all means it fell back at once.
    cfg = cloud_then_local(tmp_path, tiny_model, fake.openai_url, {"first_token_s": 600})
    fake.enqueue(Reply.status(429, retry_after=3600))
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        async with asyncio.timeout(HANG_GUARD_S):
            r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
        assert r.backend == "local"
        assert r.attempts[0].error.startswith("http 429")
        assert fake.request_count == 1


@asynccontextmanager
async def rate_limited_mid_stream(
    afters: list[int | None],
) -> AsyncIterator[tuple[str, list[str]]]:
    """An OpenAI-compatible server that, like vLLM, reports a failure inside a 200 stream as a
    chunk holding `{"error": {..., "code": 429}}`: the n-th request streams `afters[n]` pieces
    first (None, or past the list: a whole answer). Yields (base url, request paths seen)."""
    pieces = ["Hello", ",", " world", "!"]
    seen: list[str] = []

    def chunk(obj: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(obj)}\n\n".encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        n = len(seen)
        seen.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        after = afters[n] if n < len(afters) else None
        for piece in pieces[:after]:
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            await resp.write(chunk({"object": "chat.completion.chunk", "choices": [choice]}))
        if after is None:
            done = {"index": 0, "delta": {}, "finish_reason": "stop"}
            await resp.write(chunk({"object": "chat.completion.chunk", "choices": [done]}))
            await resp.write(b"data: [DONE]\n\n")
        else:
            err = {"message": "Rate limit reached", "type": "rate_limit_error", "code": 429}
            await resp.write(chunk({"error": err}))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", seen
    finally:
        await runner.cleanup()


async def test_no_retry_after_the_first_token(tmp_path: Path, tiny_model: Path) -> None:
    """The same 429 is retried when it comes before any text, never after."""
    async with rate_limited_mid_stream([0, None, 2]) as (url, seen):
        cfg = cloud_then_local(tmp_path, tiny_model, url)
        async with daemon(cfg, env=ENV) as s:
            await ready(s)
            r = await s.request("mlxd/chat", chat_params("hi", maxTokens=6))
            assert (r.backend, r.text, len(seen)) == ("cloud", "Hello, world!", 2)
            assert r.attempts == []  # the 429 before any text was retried

            r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=6))
            assert len(seen) == 3  # the 429 after "Hello," was not
            assert r.backend == "local"
            assert r.text.startswith("Hello,") and r.text == "".join(s.deltas("t"))
            assert r.attempts[0].error.startswith("http 429")
            assert "after 6 chars streamed" in r.attempts[0].error


# --- mid-stream continuation ------------------------------------------------------------------
async def test_stream_cut_midway_continues_on_local(shared: Shared) -> None:
    s, fake = shared
    fake.enqueue(Reply.cut(after=2))
    await ready(s)
    r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=8))
    runs = runs_of(s, "t")
    assert [b for b, _ in runs] == ["cloud", "local"] and runs[0][1] == "Hello,"
    assert r.text == "".join(t for _, t in runs) and len(r.text) > 6
    assert r.backend == "local"
    assert r.attempts[0].backend == "cloud"
    assert r.attempts[0].error.startswith("stream_cut")
    assert "after 6 chars streamed" in r.attempts[0].error
    # maxTokens caps the whole answer: local was asked for the 6 tokens left, and the
    # usage counts the 2 the cloud streamed (the tiny model never stops early)
    assert r.usage.completionTokens == 8 and r.finishReason == "length"


async def cut_then_continued(
    tmp_path: Path,
    model: Path,
    fake: FakeProvider,
    fake2: FakeProvider,
    head: list[str],
    tail: list[str],
    **params: Any,
) -> tuple[Session, Any]:
    """A chat whose first cloud (OpenAI) streams `head` and drops the connection, and whose
    second (Anthropic) continues with `tail`: the session (closed) and the result."""
    cfg = make_config(
        tmp_path / "c.toml",
        model,
        {"cloud": ("openai", fake.openai_url), "claude": ("anthropic", fake2.anthropic_url)},
        {"chat": ["cloud", "claude", "local"]},
    )
    cut = Reply.cut(after=len(head))
    cut.pieces = [*head, "unused"]
    fake.enqueue(cut)
    fake2.enqueue(Reply.text(tail))
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        r = await s.request("mlxd/chat", chat_params("q", token="t", maxTokens=50, **params))
    assert r.backend == "claude" and "".join(s.deltas("t")) == r.text
    return s, r


@pytest.mark.parametrize("split", [5, 8, 20])
async def test_a_key_split_by_a_cut_is_redacted_when_the_next_cloud_completes_it(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider, split: int
) -> None:
    # Hostile providers that know the key they were sent: the first streams its head and drops
    # the connection, the next continues with its tail. The redactor's held head was handed on
    # at the cut (under 6 characters: as is; else as [REDACTED]) and the next backend's text
    # met an empty redactor: the whole key reached the editor and the result (5), or all but
    # its head (8: "[REDACTED]router-5f0c..."; attack, session 27).
    head, tail = ["key: ", KEY[:split]], [KEY[split:], " end"]
    s, r = await cut_then_continued(tmp_path, tiny_model, fake, fake2, head, tail)
    assert r.text == "key: [REDACTED] end"
    # The continuing cloud got the answer so far redacted (a head of 6+ characters too).
    sent = fake2.requests[0].body["messages"][-1]["content"]
    assert sent == ("key: " + KEY[:split] if split < 6 else "key: [REDACTED]")
    # Each part under the backend that streamed it (the key, joined across the cut, is one).
    assert runs_of(s, "t")[0] == ("cloud", "key: ")


async def test_text_held_back_at_a_cut_keeps_the_name_of_the_backend_that_streamed_it(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    # The first cloud's last piece could start the key: held back at the cut, released by
    # the next cloud's text ("ing" ends it: no key), as that one saw it in its prefix (a key's
    # head redacted). It went out under the next one's name before.
    head, tail = ["a ", KEY[:8]], ["ing", " done"]
    s, r = await cut_then_continued(tmp_path, tiny_model, fake, fake2, head, tail)
    assert r.text == "a [REDACTED]ing done"
    assert runs_of(s, "t") == [("cloud", "a [REDACTED]"), ("claude", "ing done")]


async def test_a_key_head_before_text_the_filter_holds_reaches_the_next_cloud_redacted(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    # "EN" may start the stop sequence: the answer filter holds it after the redactor's key
    # head. Redacted together, the head was mid-text (only whole keys are redacted there):
    # the next cloud got 30 of the key's 31 characters (helper-91, against the fix above).
    head, tail = ["key: ", KEY[:30], "EN"], ["X", " done"]
    s, r = await cut_then_continued(tmp_path, tiny_model, fake, fake2, head, tail, stop=["END"])
    assert fake2.requests[0].body["messages"][-1]["content"] == "key: [REDACTED]EN"
    assert r.text == "key: [REDACTED]ENX done"


async def test_a_held_key_head_the_answer_ends_on_is_the_first_backends(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    # The next cloud adds nothing: the head is redacted at the answer's end, still the first's.
    s, r = await cut_then_continued(tmp_path, tiny_model, fake, fake2, ["key: ", KEY[:8]], [])
    assert runs_of(s, "t") == [("cloud", "key: [REDACTED]")] and r.text == "key: [REDACTED]"


async def test_a_cut_answer_as_long_as_max_tokens_is_not_continued(shared: Shared) -> None:
    s, fake = shared
    fake.enqueue(Reply.cut(after=3))
    await ready(s)
    before = _plain(await s.request("mlxd/stats", {}))  # the shared daemon's, from earlier tests
    r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=3))
    assert r.text == "Hello, world" and runs_of(s, "t") == [("cloud", "Hello, world")]
    assert (r.backend, r.finishReason, r.usage.completionTokens) == ("cloud", "length", 3)
    assert [a.backend for a in r.attempts] == ["cloud"]
    stats = _plain(await s.request("mlxd/stats", {}))
    assert generations(stats) == generations(before)  # local never ran


async def test_stream_cut_midway_continues_on_a_second_cloud_with_the_prefix(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url), "claude": ("anthropic", fake2.anthropic_url)},
        {"chat": ["cloud", "claude", "local"]},
    )
    fake.enqueue(Reply.cut(after=2))
    fake2.default = Reply.text([" there", "."])
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        r = await s.request("mlxd/chat", chat_params("greet me", token="t", maxTokens=8))
        assert r.text == "Hello, there."
        assert "".join(s.deltas("t")) == r.text
        assert runs_of(s, "t") == [("cloud", "Hello,"), ("claude", " there.")]
        assert r.backend == "claude"
        assert [a.backend for a in r.attempts] == ["cloud"]
        # Anthropic continues the partial answer as an assistant prefill, asked for what is
        # left of maxTokens.
        assert fake2.requests[0].body["max_tokens"] == 6
        turns = fake2.requests[0].body["messages"]
        assert turns[0] == {"role": "user", "content": "greet me"}
        assert turns[-1] == {"role": "assistant", "content": "Hello,"}

        # The second backend fails before adding anything: local continues the same prefix.
        fake.enqueue(Reply.cut(after=2))
        fake2.enqueue(Reply.status(500))
        r = await s.request("mlxd/chat", chat_params("greet me", token="u", maxTokens=8))
        assert r.backend == "local" and r.text.startswith("Hello,") and len(r.text) > 6
        runs = runs_of(s, "u")
        assert [b for b, _ in runs] == ["cloud", "local"] and runs[0][1] == "Hello,"
        assert [a.backend for a in r.attempts] == ["cloud", "claude"]
        assert r.attempts[0].error.endswith("after 6 chars streamed")
        assert (
            r.attempts[1].error.startswith("http 500")
            and "chars streamed" not in r.attempts[1].error
        )


# --- circuit breaker --------------------------------------------------------------------------
async def test_breaker_opens_skips_half_opens_and_closes_with_status(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"chat": ["cloud", "local"], "breaker_failures": 2, "breaker_cooldown_s": 1.5},
        {"first_token_s": 5},
    )
    fake.default = Reply.status(500)
    chat = chat_params("hi", maxTokens=4)

    def cloud_states() -> list[tuple[str, str]]:
        seq: list[tuple[str, str]] = []
        for st in s.statuses:
            pair = (st["state"], st["backends"]["cloud"])
            if not seq or seq[-1] != pair:
                seq.append(pair)
        return seq[seq.index(("ready", "ok")) :]

    async with daemon(cfg, env=ENV) as s:
        await s.wait_status("ready")
        r1 = await s.request("mlxd/chat", chat)
        assert r1.backend == "local" and fake.request_count == 1
        assert cloud_states() == [("ready", "ok")]  # one failure: still closed
        r2 = await s.request("mlxd/chat", chat)
        assert r2.backend == "local" and fake.request_count == 2
        await until(lambda: cloud_states()[-1] == ("degraded", "cooldown"))

        # open: skipped without a byte upstream
        r3 = await s.request("mlxd/chat", chat)
        assert r3.backend == "local" and fake.request_count == 2
        assert r3.attempts[0].backend == "cloud" and "circuit open" in r3.attempts[0].error

        # cooldown over: half-open, announced; a failed probe reopens at once
        await until(lambda: cloud_states()[-1] == ("ready", "ok"), timeout=5)
        r4 = await s.request("mlxd/chat", chat)
        assert r4.backend == "local" and fake.request_count == 3
        await until(lambda: cloud_states()[-1] == ("degraded", "cooldown"))
        r5 = await s.request("mlxd/chat", chat)
        assert fake.request_count == 3 and r5.backend == "local"

        # half-open again: exactly one probe goes through while it is in flight
        await until(lambda: cloud_states()[-1] == ("ready", "ok"), timeout=5)
        fake.default = Reply.trickle(["slow", " probe"], interval_s=0.4)
        probe = asyncio.ensure_future(s.request("mlxd/chat", chat))
        await until(lambda: fake.request_count == 4)
        other = await s.request("mlxd/chat", chat)
        assert other.backend == "local" and "probe in flight" in other.attempts[0].error
        assert fake.request_count == 4
        r6 = await probe
        assert r6.backend == "cloud" and r6.text == "slow probe" and r6.attempts == []

        # closed: the cloud serves again, and one failure does not reopen it
        fake.default = Reply.text()
        assert (await s.request("mlxd/chat", chat)).backend == "cloud"
        fake.enqueue(Reply.status(500))
        assert (await s.request("mlxd/chat", chat)).backend == "local"
        assert (await s.request("mlxd/chat", chat)).backend == "cloud"
        assert fake.request_count == 7
        assert cloud_states() == [
            ("ready", "ok"),
            ("degraded", "cooldown"),
            ("ready", "ok"),
            ("degraded", "cooldown"),
            ("ready", "ok"),
        ]


async def test_breaker_decides_per_backend_in_chain_order(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    """Attempts keep chain order; a half-open backend that a request never reached is still
    free for the next request's probe; a forced backend and a chain with nothing else to try
    get through an open circuit."""
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"a": ("openai", fake.openai_url), "b": ("openai", fake2.openai_url)},
        {
            "chat": ["a", "b", "local"],
            "complete": ["a"],
            "breaker_failures": 1,
            "breaker_cooldown_s": 1.5,
        },
    )
    chat = chat_params("hi", maxTokens=4)

    def state(name: str) -> str:
        return s.statuses[-1]["backends"][name]

    async with daemon(cfg, env=ENV) as s:
        await s.wait_status("ready")
        fake2.enqueue(Reply.status(500))
        with pytest.raises(JsonRpcException):
            await s.request("mlxd/chat", chat_params("hi", backend="b"))
        await until(lambda: state("b") == "cooldown")

        fake.enqueue(Reply.status(500))
        r = await s.request("mlxd/chat", chat)
        assert r.backend == "local"
        assert [(a.backend, a.error.split(":")[0]) for a in r.attempts] == [
            ("a", "http 500"),
            ("b", "skipped"),
        ]
        assert "circuit open" in r.attempts[1].error
        assert (fake.request_count, fake2.request_count) == (1, 1)

        # Both half-open: `a` serves as its probe; `b`, never reached, is not left claimed.
        await until(lambda: (state("a"), state("b")) == ("ok", "ok"), timeout=5)
        assert (await s.request("mlxd/chat", chat)).backend == "a"
        fake.enqueue(Reply.status(500))
        r = await s.request("mlxd/chat", chat)
        assert r.backend == "b" and [a.backend for a in r.attempts] == ["a"]
        assert (fake.request_count, fake2.request_count) == (3, 2)

        # `a` is open again: forcing it still reaches it, as does a chain of `a` alone.
        assert state("a") == "cooldown"
        r = await s.request("mlxd/chat", chat_params("hi", backend="a", maxTokens=4))
        assert r.backend == "a" and fake.request_count == 4
        fake.enqueue(Reply.status(500))
        with pytest.raises(JsonRpcException):
            await s.request("mlxd/chat", chat_params("hi", backend="a"))
        assert state("a") == "cooldown"
        c = await s.request("mlxd/complete", {"prefix": "x = ", "maxTokens": 4})
        assert c.backend == "a" and fake.request_count == 6


# --- privacy ----------------------------------------------------------------------------------
async def test_cloud_off_sends_nothing_upstream(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"cloud": False, "chat": ["cloud", "local"], "complete": ["cloud", "local"]},
    )
    async with daemon(cfg, env=ENV) as s:
        status = await s.wait_status("ready")
        assert status["backends"]["cloud"] == "unconfigured"
        r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=6))
        assert r.backend == "local" and set(backends_of(s, "t")) == {"local"}
        assert r.attempts[0].backend == "cloud" and "routing.cloud" in r.attempts[0].error
        c = await s.request("mlxd/complete", {"prefix": "x = ", "maxTokens": 4})
        assert c.backend == "local"
        with pytest.raises(JsonRpcException) as err:
            await s.request("mlxd/chat", chat_params("hi", backend="cloud"))
        assert err.value.code == -32803
        assert "routing.cloud" in err.value.data["attempts"][0]["error"]
        assert fake.request_count == 0 and fake.bytes_received == 0


async def test_excluded_document_sends_nothing_upstream(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"chat": ["cloud", "local"], "exclude": ["**/.env", "*.pem", "**/secrets/**"]},
    )
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        for uri in ("file:///p/.env", "file:///p/certs/key.pem", "file:///p/secrets/db.py"):
            r = await s.request(
                "mlxd/chat", chat_params("what is in here?", maxTokens=4, textDocument={"uri": uri})
            )
            assert r.backend == "local", uri
            assert r.attempts[0].backend == "cloud" and "routing.exclude" in r.attempts[0].error
            with pytest.raises(JsonRpcException) as err:
                await s.request(
                    "mlxd/chat", chat_params("x", backend="cloud", textDocument={"uri": uri})
                )
            assert err.value.code == -32803
        assert fake.request_count == 0
        # control: a document that matches no glob goes to the cloud
        r = await s.request(
            "mlxd/chat", chat_params("hi", maxTokens=4, textDocument={"uri": "file:///p/env.py"})
        )
        assert r.backend == "cloud" and fake.request_count == 1


# --- forced backend, aliases, deadline --------------------------------------------------------
async def test_forced_backend_fails_with_attempts_and_no_fallback(shared: Shared) -> None:
    s, fake = shared
    fake.default = Reply.status(500)
    await ready(s)
    with pytest.raises(JsonRpcException) as err:
        await s.request("mlxd/chat", chat_params("hi", token="t", backend="cloud"))
    assert err.value.code == -32803
    attempts = err.value.data["attempts"]
    assert [a["backend"] for a in attempts] == ["cloud"]
    assert attempts[0]["error"].startswith("http 500")
    assert fake.request_count == 1
    assert s.deltas("t") == []  # local never ran
    r = await s.request("mlxd/chat", chat_params("hi", backend="local", maxTokens=4))
    assert r.backend == "local" and r.attempts == []


async def test_model_alias_maps_to_its_chain(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url), "big": ("anthropic", fake2.anthropic_url)},
        {"chat": ["cloud", "local"], "models": {"smart": ["big", "local"], "fast": ["local"]}},
    )
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        r = await s.request("mlxd/chat", chat_params("hi", model="smart", maxTokens=4))
        assert r.backend == "big" and r.model == "big-model"
        assert (fake.request_count, fake2.request_count) == (0, 1)
        r = await s.request("mlxd/chat", chat_params("hi", model="fast", maxTokens=4))
        assert r.backend == "local"
        r = await s.request("mlxd/chat", chat_params("hi", maxTokens=4))
        assert r.backend == "cloud"
        assert (fake.request_count, fake2.request_count) == (1, 1)


async def test_one_time_budget_bounds_all_attempts(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, fake2: FakeProvider
) -> None:
    """Two hanging clouds with first_token_s 2 each, total_s 2.5: the request ends at ~2.5 s
    (not 4 s), and the local backend after them is not started past the budget."""
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"a": ("openai", fake.openai_url), "b": ("openai", fake2.openai_url)},
        {"chat": ["a", "b", "local"]},
        {"first_token_s": 2.0, "total_s": 2.5},
    )
    fake.default = fake2.default = Reply.hang_before_headers()
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        t0 = time.perf_counter()
        with pytest.raises(JsonRpcException) as err:
            await s.request("mlxd/chat", chat_params("hi", token="t"))
        elapsed = time.perf_counter() - t0
        assert err.value.code == -32803
        attempts = err.value.data["attempts"]
        assert [a["backend"] for a in attempts] == ["a", "b", "local"]
        assert attempts[0]["error"].startswith("timeout: no token within 2.0s")
        assert attempts[1]["error"] == "timeout: request time budget (2.5s) spent"
        assert attempts[2]["error"] == "skipped: request time budget spent"
        assert elapsed >= 2.5  # the errors above say which limit ended each attempt
        assert s.deltas("t") == []
