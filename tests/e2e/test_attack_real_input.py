"""Issue 14, an independent attack: inputs of the issue's kinds the fix may not have thought of,
on the real daemon over real stdio (fake cloud servers on loopback, the tiny real MLX model).

Passing tests are inputs that did not break anything; `xfail(strict=True)` ones are faults
found, each with its diagnosis in the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as T

from ..conftest import Session, chat_params, daemon
from ..fakes.providers import FakeProvider, Reply
from .conftest import Cloud, fresh_session
from .test_inline_e2e import inline, open_doc
from .test_real_input import _change, _close, ask, cloud_only
from .test_router import ENV, KEY

# The module's loop: its daemons (local, cloud: tests/e2e/conftest.py; raw) are shared by the
# tests that neither change their config or keys nor depend on a fresh process.
pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module")
async def fake() -> Any:
    async with FakeProvider(require_key=KEY) as f:
        yield f


# --- kind 1: document addresses ----------------------------------------------------------------
async def _seen(s: Any, fake: FakeProvider, uri: str, line: int, character: int) -> str:
    before = fake.request_count
    # Automatic: an invoked request also asks for alternatives (issue #16), one request each.
    await inline(s, line, character, kind=2, uri=uri)
    assert fake.request_count == before + 1
    body = fake.requests[-1].body
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


async def test_uri_spellings_pygls_also_decodes_are_one_document(cloud: Cloud) -> None:
    """%20 vs space, %3a vs %3A vs ':' in a change, and '+' is not a space."""
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "a = 1\nb = 2\n", uri="file:///w/My%20Project/app.py")
    _change(s, "file:///w/My Project/app.py", 2, (1, 0, 1, 0), "X")
    seen = await _seen(s, fake, "file:///w/My%20Project/app.py", 1, 1)
    assert "a = 1\nX<CURSOR>b = 2" in seen, repr(seen)
    open_doc(s, "c = 1\n", uri="file:///c%3a/w/x.py")
    _change(s, "file:///c%3A/w/x.py", 2, (0, 0, 0, 0), "Y")
    _change(s, "file:///c:/w/x.py", 3, (0, 0, 0, 0), "Z")
    seen = await _seen(s, fake, "file:///c%3A/w/x.py", 0, 2)
    assert "ZY<CURSOR>c = 1" in seen, repr(seen)
    open_doc(s, "PLUS = 1\n", uri="file:///w/a+b.py")
    open_doc(s, "SPACE = 1\n", uri="file:///w/a%20b.py")
    assert "PLUS" in await _seen(s, fake, "file:///w/a+b.py", 0, 0)
    assert "SPACE" in await _seen(s, fake, "file:///w/a b.py", 0, 0)


async def test_a_change_under_another_drive_spelling_reaches_the_document(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "a = 1\nb = 2\n", uri="file:///C:/work/app.py")
    _change(s, "file:///c%3A/work/app.py", 2, (1, 0, 1, 0), "X")  # VS Code's spelling
    seen = await _seen(s, fake, "file:///c%3A/work/app.py", 1, 1)
    assert "a = 1\nX<CURSOR>b = 2" in seen, repr(seen)


async def test_a_close_under_another_drive_spelling_closes_the_document(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "a = 1\n", uri="file:///C:/work/closed.py")
    _close(s, "file:///c%3A/work/closed.py")
    try:
        result = await inline(s, 0, 0, uri="file:///C:/work/closed.py")
    except Exception as exc:
        assert "not open" in str(exc)
    else:
        assert not result.items
    assert fake.request_count == 0  # the closed text was not sent anywhere


async def test_two_undecodable_file_names_are_two_documents(cloud: Cloud) -> None:
    # The shared daemon has no neighbour snippets: the other open document would bring OTHER
    # in as one (issue #16).
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "LATIN1 = 1\n", uri="file:///w/caf%E9.py")
    open_doc(s, "OTHER = 1\n", uri="file:///w/caf%FF.py")
    seen = await _seen(s, fake, "file:///w/caf%E9.py", 0, 0)
    assert "LATIN1" in seen and "OTHER" not in seen, repr(seen)


async def test_file_localhost_is_the_same_document(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "a = 1\n", uri="file:///w/app.py")
    seen = await _seen(s, fake, "file://localhost/w/app.py", 0, 0)
    assert "a = 1" in seen


# --- kind 2: positions and lines ---------------------------------------------------------------
async def test_line_breaks_built_and_broken_by_incremental_edits(cloud: Cloud) -> None:
    """A \\r\\n completed by a later edit, a \\r\\n broken into \\r, an empty document."""
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    uri = "file:///work/project/app.py"
    open_doc(s, "a\r", uri=uri)
    _change(s, uri, 2, (1, 0, 1, 0), "\n")  # "a\r\n": still two lines
    _change(s, uri, 3, (1, 0, 1, 0), "X")
    assert "a\r\nX<CURSOR>" in await _seen(s, fake, uri, 1, 1)
    _change(s, uri, 4, (0, 1, 1, 0), "\r")  # the terminator replaced: "a\rX"
    _change(s, uri, 5, (1, 1, 1, 1), "\u2028Y")
    _change(s, uri, 6, (1, 3, 1, 3), "Z")  # after the U+2028, same line
    assert "a\rX\u2028YZ<CURSOR>" in await _seen(s, fake, uri, 1, 4)
    empty = "file:///work/project/empty.py"
    open_doc(s, "", uri=empty)
    result = await inline(s, 0, 0, uri=empty)
    assert isinstance(result, T.InlineCompletionList)
    _change(s, empty, 2, (0, 0, 0, 0), "\U0001f600")  # an emoji, utf-16 by default
    _change(s, empty, 3, (0, 2, 0, 2), "!")
    assert "\U0001f600!<CURSOR>" in await _seen(s, fake, empty, 0, 3)


# --- kind 3: stop strings ----------------------------------------------------------------------
PIECES = ["Hel", "lo E", "N", "D wor", "ld caf", "\u00e9 .* done"]
STOPS = [
    (["lo E", "o EN"], "Hel"),  # overlapping: the earliest match wins
    (["END", "EN"], "Hello "),  # one a prefix of the other
    (["lo END"], "Hel"),  # spans three chunks
    ([" "], "Hello"),  # whitespace
    ([".*"], "Hello END world caf\u00e9 "),  # regex characters are literal
    (["\u00e9"], "Hello END world caf"),  # multi-byte
    (["never", "world"], "Hello END "),
]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_stop_strings_of_every_shape(cloud: Cloud, protocol: str) -> None:
    s, fake = await cloud(protocol)
    for stops, expected in STOPS:
        fake.enqueue(Reply.text(PIECES))
        r = await ask(s, "mlxd/chat", "t" + stops[0], stop=stops)
        assert r.text == expected, stops
        assert "".join(s.deltas("t" + stops[0])) == expected


async def test_an_empty_stop_string_is_refused_or_ignored(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(PIECES))
    try:
        r = await ask(s, "mlxd/chat", "t", stop=[""])
    except Exception as exc:  # refused: a clear invalid-params error naming stop
        assert "stop" in str(exc)
    else:
        assert r.text == "".join(PIECES)


# --- kind 4: reasoning and fences in complete ------------------------------------------------
COMPLETE_CASES = [
    (["````python\nreturn a + b\n````"], "return a + b"),
    (["``", "`", "\nreturn a + b\n", "``", "`"], "return a + b"),  # no language tag, split
    (["```python"], ""),  # a language tag only
    (["<think>\nno close, ever"], ""),
    (["  <think>x</think>\n\n  return a + b"], "  return a + b"),  # indent kept
]


async def test_complete_reasoning_and_fence_variants(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    for i, (pieces, expected) in enumerate(COMPLETE_CASES):
        fake.enqueue(Reply.text(pieces))
        r = await ask(s, "mlxd/complete", f"c{i}")
        assert r.text == expected, pieces


async def test_a_tilde_fence_is_stripped_from_complete(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(["~~~python\nreturn a + b\n~~~"]))
    r = await ask(s, "mlxd/complete", "c")
    assert r.text == "return a + b"


async def test_a_fence_line_inside_an_unfenced_python_completion_is_content(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    body = '"""Add.\n\n    ```python\n    add(1, 2)\n    ```\n    """\n    return a + b'
    fake.enqueue(Reply.text([body]))
    r = await ask(s, "mlxd/complete", "c")
    assert r.text == body


async def test_a_close_tag_only_ends_reasoning_in_complete(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(["I should add", " them.</th", "ink>\n\nreturn a + b"]))
    r = await ask(s, "mlxd/complete", "c")
    assert r.text == "return a + b"


# --- kind 5: stream endings --------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_finish_length_is_reported(cloud: Cloud, protocol: str) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(["Hel", "lo"], finish="length"))
    r = await ask(s, "mlxd/chat", "t")
    assert r.text == "Hello" and r.finishReason == "length"


# --- kind 3/4 on the local model: no U+FFFD at any cut -----------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tiny_model: Path) -> Any:
    import mlx_lm

    return mlx_lm.load(str(tiny_model))


async def test_local_cuts_at_every_token_count_leave_no_replacement_character(
    local: Session, tiny_lm: Any
) -> None:
    """The tiny model really generates invalid UTF-8 (a lone byte token mid-answer: that U+FFFD
    is the decoded tokens); what a cut may not leave is a U+FFFD at the end."""
    s = local
    from .test_real_input import chat_req, greedy_text

    for question in ("caf\u00e9 \U0001f600", "\u65e5\u672c\u8a9e"):
        for n in range(1, 6):
            token = f"{question}-{n}"
            r = await s.request("mlxd/chat", chat_params(question, token=token, maxTokens=n))
            expected = greedy_text(tiny_lm, chat_req(question), n).rstrip("\ufffd")
            assert r.text == expected and not r.text.endswith("\ufffd"), (question, n)
            assert "".join(s.deltas(token)) == r.text


# --- kind 5: stream endings, as raw SSE bytes -------------------------------------------------
class RawStream:
    """A loopback server answering every POST with the next scripted raw SSE body, then closing
    the connection (whatever the body's last bytes: a cut mid-event included)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.count = 0

    async def __aenter__(self) -> RawStream:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            self.count += 1
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(self.bodies.pop(0))
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_post("/v1/messages", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def oa(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    import json

    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return f"data: {json.dumps({**chunk, **extra})}\n\n".encode()


def an(kind: str, **data: Any) -> bytes:
    import json

    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


AN_START = an("message_start", message={"model": "m", "usage": {"input_tokens": 3}})


def an_text(text: str) -> bytes:
    return an("content_block_delta", index=0, delta={"type": "text_delta", "text": text})


RAW_OK = [
    # [DONE] cut mid-word after a finish reason: complete
    ("openai", oa({"content": "Hello"}) + oa({}, "stop") + b"data: [DO", "Hello", "stop"),
    # empty choices and a usage-only chunk before [DONE]
    (
        "openai",
        oa({"content": "Hi"})
        + b'data: {"choices": []}\n\n'
        + oa({}, "stop")
        + b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n\n'
        + b"data: [DONE]\n\n",
        "Hi",
        "stop",
    ),
    # reasoning_content and content interleaved
    (
        "openai",
        oa({"reasoning_content": "a"})
        + oa({"content": "X"})
        + oa({"reasoning_content": "b"})
        + oa({"content": "Y"}, "stop")
        + b"data: [DONE]\n\n",
        "XY",
        "stop",
    ),
    # finish_reason "length" with no [DONE]
    ("openai", oa({"content": "abc"}, "length"), "abc", "length"),
    # \r\n and lone \r line endings in the SSE framing
    (
        "openai",
        oa({"content": "crlf"}, "stop").replace(b"\n", b"\r\n") + b"data: [DONE]\r\r",
        "crlf",
        "stop",
    ),
    # Anthropic: a thinking block, then text; message_delta's stop_reason then a cut mid-event
    (
        "anthropic",
        AN_START
        + an("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "t"})
        + an_text("Hel")
        + an_text("lo")
        + an("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2})
        + b"event: message_st",
        "Hello",
        "stop",
    ),
    (
        "anthropic",
        AN_START + an_text("ab") + an("message_delta", delta={"stop_reason": "max_tokens"}),
        "ab",
        "length",
    ),
]


class _Raws:
    """One cloud_only daemon per protocol on a RawStream of its own, started on first use."""

    def __init__(self, stack: AsyncExitStack, tmp: pytest.TempPathFactory, model: Path) -> None:
        self.stack, self.tmp, self.model = stack, tmp, model
        self.rigs: dict[str, tuple[Session, RawStream]] = {}

    async def get(self, protocol: str) -> tuple[Session, RawStream]:
        if protocol not in self.rigs:
            raw = await self.stack.enter_async_context(RawStream())
            url = raw.root + "/v1" if protocol == "openai" else raw.root
            fake = type("F", (), {"openai_url": url, "anthropic_url": url})()
            cfg = cloud_only(self.tmp.mktemp(f"raw-{protocol}"), self.model, fake, protocol)
            s = await self.stack.enter_async_context(daemon(cfg, env=ENV))
            self.rigs[protocol] = (s, raw)
        return self.rigs[protocol]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def raws(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Any:
    async with AsyncExitStack() as stack:
        yield _Raws(stack, tmp_path_factory, tiny_model)


@pytest.fixture
def raw(raws: _Raws) -> Callable[[str, list[bytes]], Awaitable[Session]]:
    """`await raw(protocol, bodies)`: the shared daemon whose backend answers with `bodies`."""

    async def serve(protocol: str, bodies: list[bytes]) -> Session:
        s, stream = await raws.get(protocol)
        stream.bodies = list(bodies)
        return fresh_session(s)

    return serve


Raw = Callable[[str, list[bytes]], Awaitable[Session]]


async def test_raw_stream_endings_that_are_complete(raw: Raw) -> None:
    for protocol in ("openai", "anthropic"):
        cases = [c for c in RAW_OK if c[0] == protocol]
        s = await raw(protocol, [c[1] for c in cases])
        for i, (_, _, text, finish) in enumerate(cases):
            r = await ask(s, "mlxd/chat", f"r{protocol}{i}")
            assert (r.text, r.finishReason, r.attempts) == (text, finish, []), i


async def test_content_after_a_finish_reason_is_not_the_answer(raw: Raw) -> None:
    body = oa({"content": "Hello"}, "stop") + oa({"content": " junk"}) + b"data: [DONE]\n\n"
    s = await raw("openai", [body])
    r = await ask(s, "mlxd/chat", "t")
    assert r.text == "Hello"


AFTER_THE_END = [
    # reasoning and text after choice 0's finish; the usage chunk after it still counts
    (
        "openai",
        oa({"content": "Hello"}, "stop")
        + oa({"reasoning_content": "late"})
        + oa({"content": " junk"}, "length")
        + oa(None, None, usage={"prompt_tokens": 3, "completion_tokens": 1})
        + b"data: [DONE]\n\n",
    ),
    # Anthropic: text after message_delta's stop_reason
    (
        "anthropic",
        AN_START
        + an_text("Hello")
        + an("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 1})
        + an_text(" junk")
        + an("message_stop"),
    ),
]


@pytest.mark.parametrize(("protocol", "body"), AFTER_THE_END)
async def test_nothing_after_the_end_of_the_answer_is_the_answer(
    raw: Raw, protocol: str, body: bytes
) -> None:
    s = await raw(protocol, [body])
    r = await ask(s, "mlxd/chat", "t")
    assert (r.text, r.reasoning, r.finishReason) == ("Hello", "", "stop")


@pytest.mark.parametrize(
    ("protocol", "body"),
    [
        ("openai", oa({"content": "Hel"}, "content_filter") + b"data: [DONE]\n\n"),
        (
            "anthropic",
            AN_START
            + an_text("Hel")
            + an("message_delta", delta={"stop_reason": "refusal"})
            + an("message_stop"),
        ),
    ],
)
async def test_a_provider_s_own_end_reason_is_reported_as_documented(
    raw: Raw, protocol: str, body: bytes
) -> None:
    """docs/protocol.md: `stop` also covers a provider's own end (content_filter, refusal)."""
    s = await raw(protocol, [body])
    r = await ask(s, "mlxd/chat", "t")
    assert (r.text, r.finishReason, r.attempts) == ("Hel", "stop", [])


async def test_a_stream_cut_mid_event_before_any_finish_is_cut(raw: Raw) -> None:
    body = oa({"content": "Hel"}) + b'data: {"choices": [{"index": 0, "delta": {"con'
    s = await raw("openai", [body])
    with pytest.raises(Exception, match="stream_cut|malformed|cut"):
        await ask(s, "mlxd/chat", "t")


# --- kind 6: a cancel storm --------------------------------------------------------------------
async def test_a_cancel_storm_answers_every_request_once_and_keeps_serving(
    local: Session,
) -> None:
    s = local
    import asyncio

    await s.wait_status("ready")
    started = [s.start("mlxd/chat", chat_params(f"q{i}", maxTokens=200)) for i in range(30)]
    for msg_id, _ in started:
        s.cancel(msg_id)
        s.cancel(msg_id)  # twice: a duplicate cancel is harmless
    s.cancel("never-sent")
    outcomes = await asyncio.gather(*(f for _, f in started), return_exceptions=True)
    assert len(outcomes) == 30
    stats = await s.request("mlxd/stats", {})
    assert stats.server.pendingRequests <= 1  # this stats request itself
    r = await s.request("mlxd/chat", chat_params("after", maxTokens=2))
    assert r.backend == "local"


# --- kind 7: odd request numbers ---------------------------------------------------------------
ODD = [
    {"maxTokens": 0},
    {"maxTokens": -1},
    {"maxTokens": 1.5},
    {"maxTokens": "5"},
    {"maxTokens": True},
    {"maxTokens": 10**30},
    {"temperature": float("nan")},
    {"temperature": float("inf")},
    {"temperature": -0.0001},
    {"stop": "END"},
    {"stop": [1]},
]


async def test_odd_request_numbers_are_refused_naming_the_field(local: Session) -> None:
    s = local
    for extra in ODD:
        name = next(iter(extra))
        with pytest.raises(Exception, match=name):
            await s.request("mlxd/chat", chat_params("q", **extra))
    r = await s.request("mlxd/chat", chat_params("q", maxTokens=1, temperature=-0.0))
    assert r.backend == "local"


# --- kind 7: keys no HTTP header can carry -------------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_keys_no_header_can_carry_fail_over(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, protocol: str
) -> None:
    from .test_router import make_config

    url = fake.openai_url if protocol == "openai" else fake.anthropic_url
    chains = {"chat": ["cloud", "local"], "complete": ["cloud", "local"]}
    cfg = make_config(tmp_path / "c.toml", tiny_model, {"cloud": (protocol, url)}, chains)
    async with daemon(cfg, env=ENV) as s:
        for bad in ["sk-\U0001f600-emoji", "sk-nul\x00byte", "sk-\u00e9-latin1", "\x7f"]:
            await s.request("mlxd/setApiKey", {"backend": "cloud", "apiKey": bad})
            r = await ask(s, "mlxd/chat", "t", maxTokens=2)
            assert r.backend == "local", bad
            assert r.attempts and r.attempts[0].backend == "cloud" and r.attempts[0].error
            assert bad not in r.attempts[0].error
        with pytest.raises(Exception, match="empty API key"):
            await s.request("mlxd/setApiKey", {"backend": "cloud", "apiKey": " \t"})


# --- kinds 3 and 6 on the local model: stops across tokens, huge inputs -------------------------
async def test_a_local_stop_spanning_tokens_cuts_exactly(local: Session, tiny_lm: Any) -> None:
    s = local
    from .test_real_input import chat_req, greedy_text

    full = greedy_text(tiny_lm, chat_req("hello"), 8)
    cut = len(full) // 2
    stop = full[cut - 2 : cut + 2]
    assert stop.strip() and full.find(stop) == cut - 2
    r = await s.request("mlxd/chat", chat_params("hello", token="t", maxTokens=8, stop=[stop]))
    assert r.text == full[: cut - 2] == "".join(s.deltas("t"))
    assert r.finishReason == "stop"


async def test_a_huge_document_with_edits_near_its_end_and_huge_chats(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    import asyncio

    fake.default = Reply.text(["pass"])
    lines = 60_000
    text = "x = 1  # padding padding padding\n" * lines  # ~2 MB, many lines
    uri = "file:///work/project/big.py"
    open_doc(s, text + "tail", uri=uri)
    _change(s, uri, 2, (lines, 4, lines, 4), "!")
    seen = await _seen(s, fake, uri, lines, 5)
    assert "tail!<CURSOR>" in seen
    one_line = "y" * 3_000_000  # ~3 MB on one line
    _, big = s.start("mlxd/chat", chat_params(one_line, maxTokens=2))
    stats = await s.request("mlxd/stats", {})  # answered while the big one is handled
    assert stats is not None
    try:
        r = await asyncio.wait_for(big, 30)
    except Exception as exc:  # refused with a clear error is fine too
        assert "token" in str(exc) or "large" in str(exc) or "limit" in str(exc), exc
    else:
        assert r.text == "pass"


# --- kind 7: a reload in the middle of each request kind -----------------------------------------
async def test_a_reload_mid_complete_and_mid_inline_answers_both(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    import asyncio

    from .test_router import make_config

    backends = {"slow": ("openai", fake.openai_url), "gone": ("openai", fake.openai_url)}
    # The reload must land while `slow` hangs (see test_real_input's sibling): a busy machine's window.
    timeouts = {"first_token_s": 6, "inline_first_token_s": 6}
    chains = {"complete": ["slow", "gone", "local"], "inline": ["slow", "gone", "local"]}
    path = tmp_path / "c.toml"
    cfg = make_config(path, tiny_model, backends, chains, timeouts)
    fake.enqueue(Reply.hang_before_headers(), Reply.hang_before_headers())
    async with daemon(cfg, env=ENV) as s:
        uri = "file:///work/project/app.py"
        open_doc(s, "def add(a, b):\n    return a +", uri=uri)
        _, comp = s.start("mlxd/complete", {"prefix": "x = ", "maxTokens": 2})
        inl = asyncio.ensure_future(inline(s, 1, 14, kind=1, uri=uri))
        while fake.request_count < 2:
            await asyncio.sleep(0.01)
        chains2 = {"complete": ["slow", "local"], "inline": ["slow", "local"]}
        make_config(path, tiny_model, {"slow": backends["slow"]}, chains2, timeouts)
        s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={}))
        r = await comp
        assert r.backend == "local" and [a.backend for a in r.attempts][:1] == ["slow"]
        assert isinstance(await inl, T.InlineCompletionList)
        r = await s.request("mlxd/chat", chat_params("still", maxTokens=1))
        assert r.backend == "local"


# --- kind 2: positions in the negotiated encoding, inside a character -------------------------
INSIDE = [  # "s = é😀": utf-8 columns 4-5 are é, 6-9 the emoji; utf-16 columns 5-6 the emoji
    # (the prompt ends before the blank at the cursor, which the model writes again: #16)
    ("utf-8", 5, "s =<CURSOR>\u00e9"),
    ("utf-8", 8, "\u00e9<CURSOR>\U0001f600"),
    ("utf-8", 10, "\U0001f600<CURSOR>"),
    ("utf-16", 6, "\u00e9<CURSOR>\U0001f600"),
    ("utf-16", 7, "\U0001f600<CURSOR>"),
    ("utf-32", 6, "\U0001f600<CURSOR>"),
]


async def test_a_column_inside_a_character_rounds_down(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["pass"])
    cfg = cloud_only(tmp_path, tiny_model, fake, "openai")
    for encoding in ("utf-8", "utf-16", "utf-32"):
        kind = T.PositionEncodingKind(encoding)
        caps = T.ClientCapabilities(general=T.GeneralClientCapabilities(position_encodings=[kind]))
        async with daemon(cfg, env=ENV, capabilities=caps) as s:
            uri = "file:///work/project/app.py"
            open_doc(s, "s = \u00e9\U0001f600\n", uri=uri)
            for enc, column, expected in INSIDE:
                if enc == encoding:
                    seen = await _seen(s, fake, uri, 0, column)
                    assert expected in seen, (encoding, column, seen)


# --- kinds 3/4 together: stops meet fences and reasoning ---------------------------------------
MIXED_OK = [
    ("mlxd/complete", ["return a + b\nmore"], ["\n"], "return a + b", ""),
    ("mlxd/complete", ["\n\n  return a + b"], [], "\n\n  return a + b", ""),
    ("mlxd/chat", ["Hello END x"], ["END"], "Hello ", ""),
]


async def test_stops_with_newlines_and_leading_whitespace(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    for i, (method, pieces, stop, text, reasoning) in enumerate(MIXED_OK):
        fake.enqueue(Reply.text(pieces))
        r = await ask(s, method, f"m{i}", stop=stop)
        assert (r.text, r.reasoning) == (text, reasoning), i


async def test_a_stop_inside_think_tags_does_not_cut_the_answer(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(["<think>the user wants\n\nEND", " soon</think>Hello END x"]))
    r = await ask(s, "mlxd/chat", "t", stop=["END"])
    assert r.text == "Hello "


async def test_a_stop_inside_streamed_reasoning_does_not_cut_the_answer(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(["Hello END x"], reasoning=["END of", " thought"]))
    r = await ask(s, "mlxd/chat", "t", stop=["END"])
    assert r.text == "Hello "


async def test_a_fence_stop_on_a_fenced_completion_keeps_the_code(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(["```python\nreturn a + b\n```"]))
    r = await ask(s, "mlxd/complete", "c", stop=["```"])
    assert r.text == "return a + b"


# --- kind 3 on local inline: cuts by token count and by time ----------------------------------
async def test_local_inline_cuts_leave_no_replacement_character(tiny_config: Path) -> None:
    async with daemon(tiny_config) as s:
        await s.wait_status("ready")
        uri = "file:///work/project/jp.py"
        open_doc(s, "# \u65e5\u672c\u8a9e caf\u00e9 \U0001f600\nx = '\u65e5", uri=uri)
        empty = "file:///work/project/empty.py"
        open_doc(s, "", uri=empty)
        texts = []
        for n, ms in [(1, 20000), (2, 20000), (3, 20000), (4, 20000), (5, 20000), (64, 1)]:
            settings = {"inline": {"max_tokens": n, "max_ms": ms}}
            s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings))
            for doc, line, col in ((uri, 1, 6), (empty, 0, 0)):
                result = await inline(s, line, col, kind=1, uri=doc)
                texts += [(n, ms, item.insert_text) for item in result.items]
        assert texts  # the model did suggest something
        assert not [t for t in texts if t[2].endswith("\ufffd")], texts
        assert not [m.message for m in s.messages if "rror" in m.message]


# --- kind 6: edits in a huge document ---------------------------------------------------------
@pytest.mark.serial
async def test_edits_at_the_end_of_a_huge_one_line_document_keep_the_daemon_responsive(
    tiny_config: Path,
) -> None:
    import asyncio
    import time

    async with daemon(tiny_config) as s:
        uri = "file:///work/project/min.js"
        size = 5_000_000
        open_doc(s, "y" * size, uri=uri, language="javascript")
        await s.request("mlxd/stats", {})  # the open is applied
        t0 = time.monotonic()
        for i in range(4):  # four keystrokes at the end of the line
            _change(s, uri, 2 + i, (0, size + i, 0, size + i), "z")
        await asyncio.wait_for(s.request("mlxd/stats", {}), 60)
        took = time.monotonic() - t0
        # Generous: an edit of a 5 MB line is ~20 ms of C-speed work, not seconds.
        assert took < 2, f"4 edits took {took:.1f} s before the next request was answered"


@pytest.mark.serial
async def test_edits_at_the_end_of_a_huge_non_ascii_line_keep_the_daemon_responsive(
    tiny_config: Path,
) -> None:
    """The sibling of the one above off the ASCII fast path: UTF-16 columns past an emoji."""
    import asyncio
    import time

    async with daemon(tiny_config) as s:
        uri = "file:///work/project/min.js"
        size = 2_500_000
        open_doc(s, "\U0001f600" + "\u00e9" * size, uri=uri, language="javascript")
        await s.request("mlxd/stats", {})  # the open is applied
        end = size + 2  # UTF-16 units: the emoji takes two
        t0 = time.monotonic()
        for i in range(4):
            _change(s, uri, 2 + i, (0, end + i, 0, end + i), "z")
        _change(s, uri, 6, (0, 1, 0, 2), "")  # inside the emoji's pair: rounds down, deletes it
        await asyncio.wait_for(s.request("mlxd/stats", {}), 60)
        took = time.monotonic() - t0
        assert took < 2, f"5 edits took {took:.1f} s before the next request was answered"
        result = await inline(s, 0, 0, kind=2, uri=uri)  # the document is still addressable
        assert isinstance(result, T.InlineCompletionList)
