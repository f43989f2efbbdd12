"""AnthropicBackend against a real loopback server speaking the Messages streaming format."""

from __future__ import annotations

import asyncio
import logging

import keyring
import pytest

from mlxd.backends.anthropic import AnthropicBackend
from mlxd.config import DEFAULT_MAX_TOKENS, BackendConfig, TimeoutsConfig
from mlxd.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ModelNotFound,
    NotConfigured,
    ProtocolError,
    RateLimited,
    ServerError,
    StreamCut,
    Timeout,
)
from mlxd.secrets import KeyStore
from mlxd.types import Delta, Done, Message, Request
from tests.fakes import FileKeyring
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-ant-api03-test-SECRET-0123456789"
TIMEOUTS = TimeoutsConfig(connect_s=1.0, idle_s=0.5)


@pytest.fixture(autouse=True)
def isolated_keyring(tmp_path):
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(tmp_path / "keyring.json"))
    yield
    keyring.set_keyring(previous)


@pytest.fixture
async def fake():
    async with FakeProvider(require_key=KEY) as f:
        yield f


def make(fake: FakeProvider, key: str = KEY, base_url: str | None = None, **kw) -> AnthropicBackend:
    cfg = BackendConfig(
        protocol="anthropic",
        base_url=base_url or fake.anthropic_url,
        model="claude-haiku-4-5",
        api_key=key,
        **kw,
    )
    return AnthropicBackend("claude", cfg, TIMEOUTS, KeyStore())


def chat(*msgs: tuple[str, str], **kw) -> Request:
    return Request(kind="chat", messages=[Message(r, c) for r, c in msgs], **kw)  # type: ignore[arg-type]


HI = ("user", "hi")


async def collect(backend, request: Request) -> tuple[list[str], list[Done]]:
    deltas: list[str] = []
    dones: list[Done] = []
    try:
        async for ev in backend.stream(request):
            if isinstance(ev, Delta):
                deltas.append(ev.text)
            else:
                dones.append(ev)
    finally:
        await backend.close()
    return deltas, dones


async def failure(backend, request: Request) -> tuple[list[str], BackendError]:
    deltas: list[str] = []
    with pytest.raises(BackendError) as info:
        try:
            async for ev in backend.stream(request):
                if isinstance(ev, Delta):
                    deltas.append(ev.text)
        finally:
            await backend.close()
    return deltas, info.value


# --- the happy path -----------------------------------------------------------------------
async def test_streams_text_deltas_then_done_with_usage(fake):
    fake.enqueue(Reply.text(["Hel", "lo", "!"], usage=(12, 3)))
    deltas, dones = await collect(make(fake), chat(HI))
    assert deltas == ["Hel", "lo", "!"]
    assert dones == [Done("stop", prompt_tokens=12, completion_tokens=3, model="claude-haiku-4-5")]


async def test_max_tokens_stop_reason_is_length(fake):
    fake.enqueue(Reply.text(["a"], finish="length"))
    _, (done,) = await collect(make(fake), chat(HI))
    assert done.finish_reason == "length"


async def test_request_headers_and_body(fake):
    req = chat(
        ("system", "You are terse."),
        ("user", "hi"),
        temperature=0.0,
        max_tokens=64,
        stop=["\n\nHuman:"],
    )
    await collect(make(fake, anthropic_version="2023-06-01"), req)
    (got,) = fake.requests
    assert got.path == "/v1/messages"
    assert got.headers["x-api-key"] == KEY
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["content-type"].startswith("application/json")
    assert "authorization" not in got.headers
    body = got.body
    assert body["model"] == "claude-haiku-4-5"
    assert body["stream"] is True
    assert "temperature" in body and body["temperature"] == 0
    assert body["max_tokens"] == 64
    assert body["stop_sequences"] == ["\n\nHuman:"]
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_system_messages_move_to_top_level_and_same_roles_merge(fake):
    req = chat(
        ("system", "Rule one."),
        ("user", "a"),
        ("user", "b"),
        ("system", "Rule two."),
        ("assistant", "c"),
        ("assistant", "d"),
        ("user", "e"),
    )
    await collect(make(fake), req)
    body = fake.requests[0].body
    assert body["system"] == "Rule one.\n\nRule two."
    assert body["messages"] == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c\n\nd"},
        {"role": "user", "content": "e"},
    ]
    assert all(m["role"] != "system" for m in body["messages"])


async def test_conversation_starting_with_assistant_gets_a_user_turn_first(fake):
    await collect(make(fake), chat(("assistant", "Hello! How can I help?"), ("user", "hi")))
    msgs = fake.requests[0].body["messages"]
    assert msgs[0]["role"] == "user"
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]


async def test_max_tokens_defaults_and_no_system_or_stop_when_absent(fake):
    await collect(make(fake), chat(HI))
    body = fake.requests[0].body
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in body and "stop_sequences" not in body


async def test_base_url_with_trailing_v1_is_tolerated(fake):
    deltas, _ = await collect(make(fake, base_url=fake.anthropic_url + "/v1/"), chat(HI))
    assert deltas and fake.requests[0].path == "/v1/messages"


async def test_assistant_prefix_is_a_prefill_without_trailing_whitespace(fake):
    fake.enqueue(Reply.text([" blue,", " and so on"]))
    deltas, _ = await collect(make(fake), chat(HI, assistant_prefix="Violets are "))
    msgs = fake.requests[0].body["messages"]
    assert msgs[-1] == {"role": "assistant", "content": "Violets are"}
    # The model re-emits the space the prefill lost; the caller already has it.
    assert "".join(deltas) == "blue, and so on"


async def test_complete_kind_is_sent_as_a_chat_with_the_cursor_marked(fake):
    await collect(make(fake), Request(kind="complete", prefix="x = ", suffix="\n", language="py"))
    body = fake.requests[0].body
    assert "completion engine" in body["system"]
    (user,) = body["messages"]
    assert user["role"] == "user" and "x = <CURSOR>\n" in user["content"]


async def test_missing_key_is_not_configured(fake, monkeypatch):
    monkeypatch.delenv("MLXD_TEST_ANTHROPIC_KEY", raising=False)
    backend = make(fake, key="", api_key_env="MLXD_TEST_ANTHROPIC_KEY")
    _, err = await failure(backend, chat(HI))
    assert isinstance(err, NotConfigured)
    assert "MLXD_TEST_ANTHROPIC_KEY" in err.message and "mlxd keys set claude" in err.message
    assert fake.request_count == 0


async def test_key_from_the_keyring(fake):
    keyring.set_password("mlxd", "claude", KEY)
    deltas, _ = await collect(make(fake, key=""), chat(HI))
    assert deltas and fake.requests[0].headers["x-api-key"] == KEY


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error", "says"),
    [
        (400, BadRequest, "temperature: range: 0..1 (invalid_request_error)"),
        (403, AuthError, "permission_error"),
        (404, ModelNotFound, "model: claude-haiku-4-5 (not_found_error)"),
        (413, BadRequest, "request_too_large"),
        (500, ServerError, "Internal server error (api_error)"),
        (529, ServerError, "Overloaded (overloaded_error)"),
    ],
)
async def test_error_status_maps_to_typed_error_with_provider_message(fake, status, error, says):
    fake.enqueue(Reply.status(status))
    _, err = await failure(make(fake), chat(HI))
    assert type(err) is error and err.status == status
    assert says in err.message


async def test_wrong_key_is_auth_error(fake):
    _, err = await failure(make(fake, key="sk-ant-wrong-XYZ123456"), chat(HI))
    assert isinstance(err, AuthError) and err.status == 401
    assert "invalid x-api-key (authentication_error)" in err.message
    assert "sk-ant-wrong-XYZ123456" not in str(err)


async def test_429_with_retry_after(fake):
    fake.enqueue(Reply.status(429, retry_after=12))
    _, err = await failure(make(fake), chat(HI))
    assert isinstance(err, RateLimited) and err.retry_after == 12.0
    assert "rate_limit_error" in err.message


async def test_mid_stream_overloaded_error_event_is_server_error(fake):
    fake.enqueue(Reply.error_event("overloaded_error", "Overloaded", after=2))
    deltas, err = await failure(make(fake), chat(HI))
    assert deltas == ["Hello", ","]
    assert isinstance(err, ServerError) and err.status == 529
    assert "Overloaded" in err.message


async def test_mid_stream_other_error_event_is_protocol_error(fake):
    fake.enqueue(Reply.error_event("invalid_request_error", "Output blocked by policy", after=1))
    _, err = await failure(make(fake), chat(HI))
    assert isinstance(err, ProtocolError) and "Output blocked by policy" in err.message


async def test_malformed_event_is_protocol_error(fake):
    fake.enqueue(Reply.malformed(after=1))
    deltas, err = await failure(make(fake), chat(HI))
    assert deltas == ["Hello"] and isinstance(err, ProtocolError)


@pytest.mark.parametrize("clean", [False, True], ids=["dropped", "ended-early"])
async def test_stream_cut_before_message_stop(fake, clean):
    fake.enqueue(Reply.cut(after=3, clean=clean))
    deltas, err = await failure(make(fake), chat(HI))
    assert deltas == ["Hello", ",", " world"] and isinstance(err, StreamCut)


async def test_never_answering_server_times_out(fake):
    fake.enqueue(Reply.hang_before_headers())
    _, err = await failure(make(fake), chat(HI))
    assert isinstance(err, Timeout) and err.phase == "idle"


async def test_slow_trickle_completes(fake):
    fake.enqueue(Reply.trickle(["a", "b", "c"], interval_s=0.2))
    deltas, dones = await collect(make(fake), chat(HI))
    assert deltas == ["a", "b", "c"] and len(dones) == 1


async def test_oversized_event_is_protocol_error(fake):
    fake.enqueue(Reply.oversized())
    _, err = await failure(make(fake), chat(HI))
    assert isinstance(err, ProtocolError)


async def test_cancellation_closes_the_upstream_connection(fake):
    fake.enqueue(Reply.hang_after_headers(after=1))
    backend = make(fake)
    got_first = asyncio.Event()

    async def consume():
        async for _ev in backend.stream(chat(HI)):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_disconnect(timeout=0.3)
    await backend.close()


async def test_key_never_in_debug_logs_or_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue(
        Reply.text(),
        Reply.status(401, message=f"invalid x-api-key {KEY}"),
        Reply.error_event("overloaded_error", "Overloaded"),
    )
    errors: list[str] = []
    for _ in range(3):
        backend = make(fake)
        try:
            async for _ev in backend.stream(chat(HI)):
                pass
        except BackendError as exc:
            errors.append(str(exc))
        finally:
            await backend.close()
    assert len(errors) == 2 and "[REDACTED]" in errors[0]
    assert caplog.records
    assert KEY not in caplog.text and all(KEY not in e for e in errors)
