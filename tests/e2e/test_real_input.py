"""Issue 14, on the real daemon: the text users get is exactly what the model generated.

The tiny model's greedy tokens are computed here, in the test process, with mlx-lm's own
generator and the daemon's own prompt builder, and the daemon's answer must be their decoded
text: stream pieces, final text and fallback continuations alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from mlxd.config import InlineConfig
from mlxd.types import Message, Request

from ..conftest import Session, chat_params, daemon, write_config
from ..fakes.providers import FakeProvider, Reply
from .conftest import Cloud, cloud_only, fresh_session
from .test_inline_e2e import inline, open_doc
from .test_router import ENV, KEY, cloud_then_local, make_config

# The module's loop: its daemons (local, short, cloud: tests/e2e/conftest.py) are shared by the
# tests that neither change their config nor depend on a fresh process.
pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def tiny_lm(tiny_model: Path) -> Any:
    import mlx_lm

    return mlx_lm.load(str(tiny_model))


def greedy_text(tiny_lm: Any, req: Request, n: int) -> str:
    """What the tiny model generates greedily for `req`: its tokens decoded in one piece."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from mlxd.backends.local import fit_prompt

    model, tok = tiny_lm
    ids, _ = fit_prompt(
        SimpleNamespace(model=model, tokenizer=tok, name="tiny"),
        req,
        InlineConfig().context_tokens,
        n,
    )
    out = [
        r.token for r in stream_generate(model, tok, ids, max_tokens=n, sampler=make_sampler(0.0))
    ]
    return tok.decode([t for t in out if t not in tok.eos_token_ids])


def chat_req(text: str, prefix: str = "") -> Request:
    return Request(kind="chat", messages=[Message("user", text)], assistant_prefix=prefix)


# --- item 3: the first space --------------------------------------------------------------
@pytest.mark.parametrize("question", ["Paris", "hello", "return a +"])
async def test_local_chat_is_exactly_the_decoded_tokens(
    local: Session, tiny_lm: Any, question: str
) -> None:
    expected = greedy_text(tiny_lm, chat_req(question), 6)
    assert expected.startswith(" ")  # the tiny model's answers start with a space
    s = local
    r = await s.request("mlxd/chat", chat_params(question, token="t", maxTokens=6))
    assert r.text == expected
    assert "".join(s.deltas("t")) == expected


async def test_local_complete_is_exactly_the_decoded_tokens(local: Session, tiny_lm: Any) -> None:
    prefix = "The capital of France is"
    req = Request(kind="complete", prefix=prefix)
    expected = greedy_text(tiny_lm, req, 5)
    s = local
    r = await s.request(
        "mlxd/complete", {"prefix": prefix, "maxTokens": 5, "partialResultToken": "c"}
    )
    assert r.text == expected.rstrip("\ufffd")
    assert "".join(s.deltas("c")) == r.text


async def test_a_local_continuation_of_a_cut_cloud_answer_keeps_its_space(
    tmp_path: Path, tiny_model: Path, tiny_lm: Any
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        cfg = cloud_then_local(tmp_path, tiny_model, fake.openai_url)
        fake.enqueue(Reply.cut(after=3))  # "Hello", ",", " world"
        expected = greedy_text(tiny_lm, chat_req("hello", "Hello, world"), 5)
        assert expected.startswith(" ")
        async with daemon(cfg, env=ENV) as s:
            r = await s.request("mlxd/chat", chat_params("hello", token="t", maxTokens=8))
            assert r.text == "Hello, world" + expected
            assert "".join(s.deltas("t")) == r.text


# --- cloud answers: reasoning, fences, stops, the end of a stream ---------------------------
PROTOCOLS = ["openai", "anthropic"]


@pytest_asyncio.fixture(loop_scope="module")
async def fake() -> Any:
    async with FakeProvider(require_key=KEY) as f:
        yield f


async def ask(s: Session, method: str, token: str, **params: Any) -> Any:
    if method == "mlxd/chat":
        body = chat_params("q", token=token, **params)
    else:
        body = {"prefix": "def add(a, b):\n    ", "partialResultToken": token, **params}
    return await s.request(method, body)


def reasoning_of(s: Session, token: str) -> list[str]:
    return [v["reasoning"] for v in s.progress.get(token, []) if "reasoning" in v]


# item 8
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", ["mlxd/chat", "mlxd/complete"])
async def test_a_stream_with_a_finish_reason_but_no_end_marker_is_complete(
    cloud: Cloud, protocol: str, method: str
) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(["Hello", ", world"], end_marker=False))
    r = await ask(s, method, "t")
    assert r.text == "Hello, world" and r.attempts == [] and r.finishReason == "stop"
    assert "".join(s.deltas("t")) == r.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stream_ending_without_a_finish_reason_is_still_cut(
    cloud: Cloud, protocol: str
) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.cut(after=2, clean=True))  # a clean end, but no finish and no marker
    with pytest.raises(Exception) as err:
        await ask(s, "mlxd/chat", "t")
    assert "stream_cut" in str(err.value)


# item 7
STOP_PIECES = ["Hel", "lo E", "ND wor", "ld"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", ["mlxd/chat", "mlxd/complete"])
async def test_a_server_that_ignores_stop_is_stopped_by_the_daemon(
    cloud: Cloud, protocol: str, method: str
) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(STOP_PIECES))
    r = await ask(s, method, "t", stop=["END"])
    assert r.text == "Hello " and r.finishReason == "stop"
    assert "".join(s.deltas("t")) == "Hello "


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stop_match_closes_the_upstream(cloud: Cloud, protocol: str) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.trickle(["Hello", " E", "ND"] + ["more"] * 50, interval_s=0.1))
    r = await ask(s, "mlxd/chat", "t", stop=["END", "never"])
    assert r.text == "Hello "
    await fake.wait_disconnect(1)  # the daemon went away long before the 50 pieces


async def test_stop_sequences_hold_across_a_fallback_continuation(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """The stop seen on the continuing backend's text, even one the first one started."""
    cfg = cloud_then_local(tmp_path, tiny_model, fake.openai_url)
    fake.enqueue(Reply.cut(after=2))  # "Hello", ","
    async with daemon(cfg, env=ENV) as s:
        r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=8, stop=[","]))
        assert r.text == "Hello" and r.backend == "cloud"


# item 5
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_streamed_reasoning_is_reported_apart_from_the_chat_answer(
    cloud: Cloud, protocol: str
) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(["Hello", "!"], reasoning=["The user", " greets me."]))
    r = await ask(s, "mlxd/chat", "t")
    assert r.text == "Hello!" and "".join(s.deltas("t")) == "Hello!"
    assert r.reasoning == "The user greets me."
    assert "".join(reasoning_of(s, "t")) == r.reasoning


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_burst_of_deltas_goes_out_in_few_notifications_in_order(
    cloud: Cloud, protocol: str
) -> None:
    # A provider's burst cost one $/progress frame a delta, ~270 bytes of JSON each (the
    # reasoning cap, 32,768 deltas, sent ~11 MB). What is handed on in one event-loop turn goes
    # out as one frame per run of a field now: the same text, in the same order.
    s, fake = await cloud(protocol)
    thoughts, words = [f"t{i} " for i in range(4000)], [f"w{i} " for i in range(400)]
    fake.enqueue(Reply.text(words, reasoning=thoughts))
    r = await ask(s, "mlxd/chat", "burst")
    assert r.reasoning == "".join(thoughts) == "".join(reasoning_of(s, "burst"))
    assert r.text == "".join(words) == "".join(s.deltas("burst"))
    fields = ["delta" in v for v in s.progress["burst"]]
    assert fields == sorted(fields)  # every reasoning frame before the answer's first
    assert len(fields) <= 4400 / 4, len(fields)  # (the router yields every 32 events)


THINK_PIECES = ["<thi", "nk>Let me", " think</th", "ink>\n\nHello", " world"]


async def test_think_tags_are_reasoning_in_chat(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(THINK_PIECES))
    r = await ask(s, "mlxd/chat", "t")
    assert r.text == "Hello world" and "".join(s.deltas("t")) == r.text
    assert r.reasoning == "Let me think" == "".join(reasoning_of(s, "t"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_complete_never_contains_reasoning(cloud: Cloud, protocol: str) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(THINK_PIECES), Reply.text(["Hello world"], reasoning=["hmm"]))
    for _ in range(2):
        r = await ask(s, "mlxd/complete", "c")
        assert r.text == "Hello world" and r.reasoning == ""
    assert "".join(s.deltas("c")) == "Hello world" * 2 and not reasoning_of(s, "c")


# item 6
FENCED = [
    ["```python\nreturn a + b\n```"],
    ["``", "`py", "thon\nreturn a", " + b\n``", "`\n\nThis adds them."],
    ["```\nreturn a + b\n```"],
    ["return a + b\n```"],  # the prompt opened the fence; the model closes it
    ["<think>add them</think>\n```python\nreturn a + b\n```"],
]


@pytest.mark.parametrize("pieces", FENCED)
async def test_fences_are_stripped_from_complete(cloud: Cloud, pieces: list[str]) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(pieces))
    r = await ask(s, "mlxd/complete", "c")
    assert r.text == "return a + b" == "".join(s.deltas("c"))


@pytest.mark.parametrize("pieces", [FENCED[0], FENCED[4], ["<think>", "x</think>", "a + b"]])
async def test_inline_ghost_text_has_no_fence_and_no_reasoning(
    cloud: Cloud, uri: str, pieces: list[str]
) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(pieces)
    open_doc(s, "def add(a, b):\n    \n", uri=uri)
    result = await inline(s, 1, 4, kind=1, uri=uri)
    texts = [i.insert_text for i in result.items]
    assert texts and all("`" not in t and "think" not in t for t in texts), texts
    assert any("a + b" in t for t in texts), texts


async def test_chat_keeps_fences(cloud: Cloud) -> None:
    s, fake = await cloud("openai")
    fake.enqueue(Reply.text(FENCED[0]))
    r = await ask(s, "mlxd/chat", "t")
    assert r.text == FENCED[0][0]


# --- item 10: a backend's surprise is a failed attempt ----------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "bad_key", ["sk-pasted\nwith-a-newline", "sk-with\r\ncrlf", "sk-trailing-newline\n"]
)
async def test_a_key_holding_a_control_character_fails_over_to_the_next_backend(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, protocol: str, bad_key: str
) -> None:
    url = fake.openai_url if protocol == "openai" else fake.anthropic_url
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": (protocol, url)},
        {"chat": ["cloud", "local"], "complete": ["cloud", "local"]},
    )
    async with daemon(cfg, env={"FAKE_KEY": bad_key}) as s:
        for method in ("mlxd/chat", "mlxd/complete"):
            r = await ask(s, method, "t", maxTokens=3)
            assert r.backend == "local"
            assert r.attempts[0].backend == "cloud" and r.attempts[0].error
            assert bad_key not in r.attempts[0].error


async def test_a_backend_removed_by_a_reload_mid_request_is_a_failed_attempt(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    backends = {"slow": ("openai", fake.openai_url), "gone": ("openai", fake.openai_url)}
    # The reload must land while `slow` waits: a window long enough for a busy machine (the test
    # runs beside another worker's); it waits the window out either way.
    timeouts = {"first_token_s": 6}
    path = tmp_path / "c.toml"
    cfg = make_config(path, tiny_model, backends, {"chat": ["slow", "gone", "local"]}, timeouts)
    fake.enqueue(Reply.hang_before_headers())  # `slow` times out after the reload
    async with daemon(cfg, env=ENV) as s:
        _, fut = s.start("mlxd/chat", chat_params("q", maxTokens=3))
        while fake.request_count == 0:
            await asyncio.sleep(0.01)
        # The request's chain was fixed when it started; the reload removes `gone` from under it.
        make_config(
            path, tiny_model, {"slow": backends["slow"]}, {"chat": ["slow", "local"]}, timeouts
        )
        s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={}))
        r = await fut
        assert r.backend == "local"
        assert [a.backend for a in r.attempts] == ["slow", "gone"]
        assert "removed by a configuration reload" in r.attempts[1].error


# --- item 11: numeric settings ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"local": {"prompt_cache_mb": -1}}, "local.prompt_cache_mb"),
        ({"timeouts": {"total_s": float("nan")}}, "timeouts.total_s"),
        ({"timeouts": {"first_token_s": float("inf")}}, "timeouts.first_token_s"),
        ({"local": {"idle_unload_s": -5}}, "local.idle_unload_s"),
    ],
)
async def test_an_out_of_range_setting_is_refused_naming_its_key(
    local: Session, settings: dict[str, Any], key: str
) -> None:
    s = local
    await s.wait_status("ready")
    s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings))
    # The next request is answered under the previous config, after the reload was handled.
    r = await s.request("mlxd/chat", chat_params("still works", maxTokens=2))
    assert r.backend == "local"
    assert any(f": {key}: " in m.message for m in s.messages), [m.message for m in s.messages]


# --- item 12: closing a document mid-request --------------------------------------------------
def _inline_params(uri: str, line: int, character: int) -> T.InlineCompletionParams:
    return T.InlineCompletionParams(
        text_document=T.TextDocumentIdentifier(uri),
        position=T.Position(line, character),
        context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
    )


def _close(s: Session, uri: str) -> None:
    s.client.text_document_did_close(
        T.DidCloseTextDocumentParams(text_document=T.TextDocumentIdentifier(uri))
    )


URI = "file:///work/project/app.py"


async def test_a_document_closed_while_its_inline_request_waits_answers_no_items(
    cloud: Cloud, uri: str
) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.hang_after_headers()
    open_doc(s, "def add(a, b):\n    ", uri=uri)
    fut = asyncio.ensure_future(
        s.client.text_document_inline_completion_async(_inline_params(uri, 1, 4))
    )
    while fake.request_count == 0:
        await asyncio.sleep(0.01)
    _close(s, uri)
    result = await fut
    assert isinstance(result, T.InlineCompletionList) and not result.items
    await fake.wait_disconnect(1)  # and the generation behind it stopped


async def test_an_inline_request_racing_with_its_documents_close_answers_no_items(
    local: Session,
) -> None:
    s = local
    for i in range(5):
        uri = f"file:///work/project/race{i}.py"
        open_doc(s, "x = 1\n", uri=uri)
        # Sent in this order on the wire: the request was made while the document was open.
        fut = asyncio.ensure_future(
            s.client.text_document_inline_completion_async(_inline_params(uri, 1, 0))
        )
        _close(s, uri)
        result = await fut
        assert isinstance(result, T.InlineCompletionList) and not result.items
    # A document that was never open is still an error.
    with pytest.raises(Exception, match="not open"):
        await s.client.text_document_inline_completion_async(
            _inline_params("file:///never/opened.py", 0, 0)
        )


# --- item 2: the LSP line model ---------------------------------------------------------------
def _change(s: Session, uri: str, version: int, rng: tuple[int, int, int, int], text: str) -> None:
    s.client.text_document_did_change(
        T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                T.TextDocumentContentChangePartial(
                    range=T.Range(T.Position(*rng[:2]), T.Position(*rng[2:])), text=text
                )
            ],
        )
    )


async def _prompt_seen(
    s: Session, fake: FakeProvider, line: int, character: int, uri: str = URI
) -> str:
    """The document around the cursor as the daemon sent it to the (fake) cloud backend."""
    before = fake.request_count
    # Automatic: an invoked request also asks for alternatives (issue #16), one request each.
    await inline(s, line, character, kind=2, uri=uri)
    assert fake.request_count == before + 1
    body = fake.requests[-1].body
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


SEPARATORS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
async def test_edits_after_a_character_that_splitlines_breaks_at_land_on_the_right_line(
    cloud: Cloud, uri: str, sep: str
) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, f"a = 1\n{sep}\nb = 1\nc = {sep}2\n", uri=uri)
    _change(s, uri, 2, (2, 0, 2, 0), "X")  # line 2 is "b = 1": LSP has 4 lines here
    _change(s, uri, 3, (3, 5, 3, 6), "Y")  # replaces the "2" after the separator
    seen = await _prompt_seen(s, fake, 2, 1, uri)
    assert f"a = 1\n{sep}\nX<CURSOR>b = 1\nc = {sep}Y\n" in seen, repr(seen)


@pytest.mark.parametrize(("encoding", "column"), [("utf-16", 3), ("utf-8", 6), ("utf-32", 2)])
async def test_edits_use_the_negotiated_position_encoding(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, encoding: str, column: int
) -> None:
    fake.default = Reply.text(["pass"])
    caps = T.ClientCapabilities(
        general=T.GeneralClientCapabilities(position_encodings=[T.PositionEncodingKind(encoding)])
    )
    cfg = cloud_only(tmp_path, tiny_model, fake, "openai")
    async with daemon(cfg, env=ENV, capabilities=caps) as s:
        open_doc(s, "s = 'é😀'\nz\n")
        _change(s, URI, 2, (0, 5 + column, 0, 5 + column), "X")  # after the emoji
        seen = await _prompt_seen(s, fake, 1, 0)
        assert "s = 'é😀X'\n<CURSOR>z" in seen, repr(seen)


async def test_positions_outside_the_document_clamp_to_its_ends(cloud: Cloud, uri: str) -> None:
    s, fake = await cloud("openai")
    fake.default = Reply.text(["pass"])
    open_doc(s, "ab\r\ncd\rEF", uri=uri)
    _change(s, uri, 2, (0, 99, 0, 99), "1")  # past the line's end: at its end
    _change(s, uri, 3, (1, 1, 1, 99), "2")  # a range running past the line's end
    _change(s, uri, 4, (50, 0, 60, 0), "3")  # past the last line: at the document's end
    seen = await _prompt_seen(s, fake, 99, 99, uri)
    assert "ab1\r\nc2\rEF3<CURSOR>" in seen, repr(seen)


# --- item 13: the context window ---------------------------------------------------------------
WINDOW = 256


@pytest.fixture(scope="module")
def short_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a context window of WINDOW tokens in its config."""
    import json

    from mlxd.models.tiny import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("short") / "model")
    cfg = json.loads((path / "config.json").read_text())
    cfg["max_position_embeddings"] = WINDOW
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def short_daemon(
    tmp_path_factory: pytest.TempPathFactory, short_model: Path
) -> AsyncIterator[Session]:
    """A daemon on short_model, shared like local_daemon (no prompt cache either)."""
    cfg = write_config(
        tmp_path_factory.mktemp("short") / "short.toml",
        f'[local]\nmodel = "{short_model}"\nprompt_cache_mb = 0\n',
    )
    async with daemon(cfg) as s:
        yield s


@pytest.fixture
def short(short_daemon: Session) -> Session:
    return fresh_session(short_daemon)


def _count(tok: Any, msgs: list[dict[str, str]]) -> int:
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return len(tok.encode(text, add_special_tokens=False))


async def test_a_chat_longer_than_the_context_window_drops_its_oldest_turns(
    short: Session, short_model: Path
) -> None:
    from mlx_lm.utils import load_tokenizer

    tok = load_tokenizer(short_model)
    system = {"role": "system", "content": "You are terse."}
    turns = []
    for i in range(8):
        turns.append({"role": "user", "content": f"question {i}: " + "tell me more " * 8})
        turns.append({"role": "assistant", "content": f"answer {i}: " + "here it is " * 8})
    turns.append({"role": "user", "content": "last question?"})
    assert _count(tok, [system, *turns]) > WINDOW
    s = short
    r = await s.request("mlxd/chat", {"messages": [system, *turns], "maxTokens": 16})
    used = r.usage.promptTokens
    assert used + r.usage.completionTokens <= WINDOW
    # The prompt was the system message plus the longest run of latest turns that fits.
    fits = [
        _count(tok, [system, *turns[i:]])
        for i in range(0, len(turns), 2)
        if _count(tok, [system, *turns[i:]]) <= WINDOW - 16
    ]
    assert fits and used == max(fits)


@pytest.mark.parametrize("method", ["mlxd/chat", "mlxd/complete"])
async def test_a_prompt_that_cannot_fit_is_refused_naming_the_limit(
    short: Session, method: str
) -> None:
    huge = "word " * 2000
    params: dict[str, Any] = (
        chat_params(huge, maxTokens=4)
        if method == "mlxd/chat"
        else {"prefix": "x", "suffix": "", "maxTokens": 4}
    )
    s = short
    if method == "mlxd/chat":
        with pytest.raises(JsonRpcException) as err:
            await s.request(method, params)
        assert err.value.code == -32602
        assert f"context window of {WINDOW} tokens" in str(err.value)
    else:  # a completion's prompt is trimmed to fit instead
        r = await s.request(method, {**params, "prefix": huge, "maxTokens": 1000})
        assert r.usage.promptTokens + r.usage.completionTokens <= WINDOW
        assert r.finishReason == "length"


# --- item 9: no heavy work on the event loop ---------------------------------------------------
@pytest.mark.slow
async def test_the_daemon_answers_while_a_huge_prompt_is_tokenized(short: Session) -> None:
    """A 300 KB chat message takes the tokenizer seconds; meanwhile other requests are answered
    (ordering, not timing: several answers arrive before the big request's)."""
    s = short
    await s.wait_status("ready")
    _, big = s.start("mlxd/chat", chat_params("word " * 60_000, maxTokens=4))
    answered = 0
    while not big.done():
        await s.request("mlxd/models", {})
        answered += 1
    with pytest.raises(Exception, match="context window"):
        await big
    assert answered >= 3


async def test_a_one_line_megabyte_prefix_completes_and_cancel_is_answered(
    local: Session,
) -> None:
    s = local
    await s.wait_status("ready")
    line = "x = foo(bar) + " * 70_000  # about 1 MB, no line break
    r = await s.request("mlxd/complete", {"prefix": line, "maxTokens": 4})
    assert r.usage.promptTokens <= 1024 + 64  # inline.context_tokens, not the megabyte
    msg_id, fut = s.start("mlxd/complete", {"prefix": line, "maxTokens": 400})
    s.cancel(msg_id)
    models = await s.request("mlxd/models", {})
    assert models.models
    try:
        await fut  # answered exactly once: a result if it finished before the cancel
    except JsonRpcException as exc:
        assert exc.code == -32800


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a reasoning model's chat template: the prompt opens <think>."""
    import json

    from mlxd.models.tiny import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("think") / "model")
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    cfg["chat_template"] = cfg["chat_template"].replace(
        "'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>\n'"
    )
    assert "<think>" in cfg["chat_template"]
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path


async def test_a_local_prompt_that_opens_a_think_block_streams_reasoning(
    tmp_path: Path, thinking_model: Path
) -> None:
    import mlx_lm

    from ..conftest import write_config

    lm = mlx_lm.load(str(thinking_model))
    expected = greedy_text(lm, chat_req("hello"), 6)
    assert "</think>" not in expected  # the random model never closes it: all reasoning
    cfg = write_config(tmp_path / "t.toml", f'[local]\nmodel = "{thinking_model}"\n')
    async with daemon(cfg) as s:
        r = await s.request("mlxd/chat", chat_params("hello", token="t", maxTokens=6))
        assert r.text == "" and r.reasoning == expected.rstrip("\ufffd")
        assert "".join(reasoning_of(s, "t")) == r.reasoning and not s.deltas("t")
        c = await s.request("mlxd/complete", {"prefix": "x = ", "maxTokens": 3})
        assert c.reasoning == ""


# --- item 4 on cloud streams: a character split between two chunks --------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_character_split_into_lone_surrogates_across_chunks_is_joined(
    cloud: Cloud, protocol: str
) -> None:
    s, fake = await cloud(protocol)
    fake.enqueue(Reply.text(["smile \ud83d", "\ude00!"]))
    r = await ask(s, "mlxd/chat", "t")
    deltas = s.deltas("t")  # (one frame, or two: a turn's deltas share one)
    assert "".join(deltas) == "smile \U0001f600!" and all(d.encode() for d in deltas)
    assert r.text == "smile \U0001f600!"
