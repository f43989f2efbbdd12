"""OpenAIBackend against a real loopback server speaking OpenAI's streaming format."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from dataclasses import asdict
from pathlib import Path

import aiohttp
import keyring
import pytest

from mlxd.backends.openai import CONTINUE_PROMPT, OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConnectError,
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
from tests.fakes.providers import FakeProvider, Reply, http_date
from tests.kit import free_port

KEY = "sk-test-0123456789abcdefSECRET"
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


def make(fake: FakeProvider, key: str | None = KEY, **cfg_kw) -> OpenAIBackend:
    cfg = BackendConfig(
        protocol="openai",
        base_url=fake.openai_url,
        model="gpt-4o-mini",
        api_key=key or "",
        **cfg_kw,
    )
    return OpenAIBackend("openai", cfg, TIMEOUTS, KeyStore())


def chat(*texts: str, **kw) -> Request:
    return Request(kind="chat", messages=[Message("user", t) for t in texts], **kw)


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
async def test_streams_deltas_then_one_done(fake):
    fake.enqueue(Reply.text(["Hel", "lo", " wor", "ld"], usage=(9, 4)))
    deltas, dones = await collect(make(fake), chat("hi"))
    assert deltas == ["Hel", "lo", " wor", "ld"]
    assert dones == [
        Done(finish_reason="stop", prompt_tokens=9, completion_tokens=4, model="gpt-4o-mini")
    ]


async def test_request_carries_auth_model_temperature_zero_stop_and_stream(fake):
    backend = make(fake, headers={"HTTP-Referer": "https://example.org"})
    req = Request(
        kind="chat",
        messages=[Message("system", "be brief"), Message("user", "hi")],
        temperature=0.0,
        max_tokens=32,
        stop=["\n\n", "END"],
    )
    await collect(backend, req)
    (got,) = fake.requests
    assert got.path == "/v1/chat/completions"
    assert got.headers["authorization"] == f"Bearer {KEY}"
    assert got.headers["http-referer"] == "https://example.org"
    assert got.headers["content-type"].startswith("application/json")
    body = got.body
    assert body["model"] == "gpt-4o-mini"
    assert "temperature" in body and body["temperature"] == 0
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 32
    assert body["stop"] == ["\n\n", "END"]
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


async def test_unset_max_tokens_and_empty_stop_are_omitted(fake):
    await collect(make(fake), chat("hi", temperature=0.7))
    body = fake.requests[0].body
    assert "max_tokens" not in body and "stop" not in body
    assert body["temperature"] == 0.7


async def test_finish_reason_length(fake):
    fake.enqueue(Reply.text(["a"], finish="length"))
    _, (done,) = await collect(make(fake), chat("hi"))
    assert done.finish_reason == "length"


async def test_keyless_server_gets_no_authorization_header():
    async with FakeProvider() as fake:
        deltas, dones = await collect(make(fake, key=None), chat("hi"))
        assert "".join(deltas) == "Hello, world!" and len(dones) == 1
        assert "authorization" not in fake.requests[0].headers


async def test_key_from_environment(fake, monkeypatch):
    monkeypatch.setenv("MLXD_TEST_OPENAI_KEY", KEY)
    deltas, _ = await collect(make(fake, key=None, api_key_env="MLXD_TEST_OPENAI_KEY"), chat("hi"))
    assert deltas and fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_missing_key_is_not_configured_and_says_where_keys_come_from(fake, monkeypatch):
    monkeypatch.delenv("MLXD_TEST_OPENAI_KEY", raising=False)
    backend = make(fake, key=None, api_key_env="MLXD_TEST_OPENAI_KEY")
    _, err = await failure(backend, chat("hi"))
    assert isinstance(err, NotConfigured)
    assert "MLXD_TEST_OPENAI_KEY" in err.message and "mlxd keys set openai" in err.message
    assert fake.request_count == 0


async def test_connection_is_pooled_across_requests(fake):
    backend = make(fake)
    try:
        for _ in range(3):
            async for _ev in backend.stream(chat("hi")):
                pass
    finally:
        await backend.close()
    peers = {r.peer for r in fake.requests}
    assert fake.request_count == 3 and len(peers) == 1


# --- completion kinds and continuation ----------------------------------------------------
async def test_complete_uses_legacy_completions_when_configured(fake):
    fake.enqueue(Reply.text(["return ", "a + b"]))
    req = Request(kind="complete", prefix="def add(a, b):\n    ", suffix="\n", max_tokens=16)
    deltas, dones = await collect(make(fake, completions=True), req)
    assert "".join(deltas) == "return a + b" and len(dones) == 1
    got = fake.requests[0]
    assert got.path == "/v1/completions"
    assert got.body["prompt"] == "def add(a, b):\n    "
    assert got.body["suffix"] == "\n"
    assert got.body["stream"] is True and got.body["temperature"] == 0
    assert "messages" not in got.body


async def test_complete_without_completions_asks_a_chat_model(fake):
    req = Request(kind="inline", prefix="x = ", suffix="\nprint(x)", language="python")
    await collect(make(fake), req)
    got = fake.requests[0]
    assert got.path == "/v1/chat/completions"
    system, user = got.body["messages"]
    assert system["role"] == "system" and "only" in system["content"]
    assert user["role"] == "user" and "x = <CURSOR>\nprint(x)" in user["content"]
    assert user["content"].startswith("```python")


async def test_assistant_prefix_is_sent_as_assistant_turn_plus_continue_request(fake):
    await collect(make(fake), chat("write a poem", assistant_prefix="Roses are red,\n"))
    msgs = fake.requests[0].body["messages"]
    assert msgs[-2] == {"role": "assistant", "content": "Roses are red,\n"}
    assert msgs[-1] == {"role": "user", "content": CONTINUE_PROMPT}


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error", "says"),
    [
        (400, BadRequest, "Invalid value for 'temperature'. (invalid_request_error)"),
        (403, AuthError, "does not have access to model gpt-4o-mini"),
        (404, ModelNotFound, "The model `gpt-4o-mini` does not exist"),
        (500, ServerError, "The server had an error while processing your request"),
    ],
)
async def test_error_status_maps_to_typed_error_with_provider_message(fake, status, error, says):
    fake.enqueue(Reply.status(status))
    _, err = await failure(make(fake), chat("hi"))
    assert type(err) is error
    assert err.status == status
    assert says in err.message


async def test_wrong_key_is_auth_error_and_the_key_is_not_in_the_message(fake):
    _, err = await failure(make(fake, key="sk-wrong-key-ABCDEFGH123456"), chat("hi"))
    assert isinstance(err, AuthError) and err.status == 401
    assert "Incorrect API key provided" in err.message and "invalid_api_key" in err.message
    assert "sk-wrong-key-ABCDEFGH123456" not in str(err)


async def test_provider_echoing_the_key_is_redacted(fake):
    fake.enqueue(Reply.status(401, message=f"Incorrect API key provided: {KEY}."))
    _, err = await failure(make(fake), chat("hi"))
    assert KEY not in str(err) and "[REDACTED]" in err.message


async def test_429_with_retry_after_seconds(fake):
    fake.enqueue(Reply.status(429, retry_after=7))
    _, err = await failure(make(fake), chat("hi"))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7.0
    assert "Rate limit reached" in err.message and "rate_limit_exceeded" in err.message


async def test_429_with_openai_retry_after_ms(fake):
    fake.enqueue(Reply.status(429, retry_after_ms=1500, retry_after=2))
    _, err = await failure(make(fake), chat("hi"))
    assert isinstance(err, RateLimited) and err.retry_after == 1.5


async def test_503_with_retry_after_http_date(fake):
    fake.enqueue(Reply.status(503, retry_after=http_date(30)))
    _, err = await failure(make(fake), chat("hi"))
    assert isinstance(err, ServerError) and err.status == 503
    assert err.retry_after is not None and 25 <= err.retry_after <= 31
    assert "overloaded" in err.message


async def test_non_json_error_body_is_truncated(fake):
    fake.enqueue(Reply.status(502, body="<html>" + "Bad gateway " * 500 + "</html>"))
    _, err = await failure(make(fake), chat("hi"))
    assert isinstance(err, ServerError) and err.status == 502
    assert "Bad gateway" in err.message and len(err.message) < 500


async def test_malformed_stream_is_protocol_error(fake):
    fake.enqueue(Reply.malformed(after=1))
    deltas, err = await failure(make(fake), chat("hi"))
    assert deltas == ["Hello"]
    assert isinstance(err, ProtocolError) and "invalid JSON" in err.message


async def test_mid_stream_error_chunk_is_reported_with_its_message(fake):
    fake.enqueue(Reply.error_event("server_error", "The model is overloaded", after=2))
    deltas, err = await failure(make(fake), chat("hi"))
    assert deltas == ["Hello", ","]
    assert isinstance(err, ProtocolError) and "The model is overloaded" in err.message


@pytest.mark.parametrize("clean", [False, True], ids=["dropped", "ended-early"])
async def test_stream_cut_before_done_is_stream_cut(fake, clean):
    fake.enqueue(Reply.cut(after=2, clean=clean))
    deltas, err = await failure(make(fake), chat("hi"))
    assert deltas == ["Hello", ","]
    assert isinstance(err, StreamCut)


async def test_server_that_never_answers_times_out_idle(fake):
    fake.enqueue(Reply.hang_before_headers())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    _, err = await failure(make(fake), chat("hi"))
    # The phase says the idle timer fired (not connect, not total); waiting is never early.
    assert isinstance(err, Timeout) and err.phase == "idle"
    assert loop.time() - t0 >= 0.4


async def test_silence_after_headers_times_out_idle(fake):
    fake.enqueue(Reply.hang_after_headers(after=1))
    deltas, err = await failure(make(fake), chat("hi"))
    assert deltas == ["Hello"]
    assert isinstance(err, Timeout) and err.phase == "idle"


async def test_slow_trickle_with_keepalives_within_idle_completes(fake):
    fake.enqueue(Reply.trickle(["a", "b", "c", "d"], interval_s=0.2))
    deltas, dones = await collect(make(fake), chat("hi"))
    assert deltas == ["a", "b", "c", "d"] and len(dones) == 1


async def test_oversized_event_is_protocol_error(fake):
    fake.enqueue(Reply.oversized(2 * 1024 * 1024))
    _, err = await failure(make(fake), chat("hi"))
    assert isinstance(err, ProtocolError) and "exceeds" in err.message


async def test_connection_refused_is_connect_error():
    port = free_port()
    cfg = BackendConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    backend = OpenAIBackend("openai", cfg, TIMEOUTS, KeyStore())
    _, err = await failure(backend, chat("hi"))
    assert isinstance(err, ConnectError) and str(port) in err.message


@pytest.mark.skipif(
    sys.platform != "linux", reason="relies on Linux dropping SYNs to a full backlog"
)
async def test_connect_that_never_completes_times_out_in_connect_phase():
    # A listener that never accepts, with its backlog filled: the kernel drops further SYNs.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        try:
            cfg = BackendConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m")
            backend = OpenAIBackend("openai", cfg, TIMEOUTS, KeyStore())
            _, err = await failure(backend, chat("hi"))
        finally:
            for c in fillers:
                c.close()
    assert isinstance(err, Timeout) and err.phase == "connect"


async def test_unresolvable_host_is_connect_error():
    cfg = BackendConfig(base_url="http://no-such-host.invalid/v1", model="m")
    backend = OpenAIBackend("openai", cfg, TIMEOUTS, KeyStore())
    _, err = await failure(backend, chat("hi"))
    assert isinstance(err, ConnectError)


# --- cancellation -------------------------------------------------------------------------
async def test_cancelling_the_consumer_closes_the_upstream_connection_at_once(fake):
    fake.enqueue(Reply.hang_after_headers(after=1))
    # An idle timeout of an hour: a disconnect the fake sees can only come from the cancel.
    cfg = BackendConfig(protocol="openai", base_url=fake.openai_url, model="m", api_key=KEY)
    backend = OpenAIBackend("openai", cfg, TimeoutsConfig(idle_s=3600), KeyStore())
    first = asyncio.Event()

    async def consume():
        async for ev in backend.stream(chat("hi")):
            if isinstance(ev, Delta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_disconnect(timeout=10)
    assert fake.requests[0].disconnected
    await backend.close()


async def test_aclose_of_the_stream_closes_the_upstream_connection(fake):
    fake.enqueue(Reply.trickle(["a"] * 50, interval_s=0.05))
    backend = make(fake)
    agen = backend.stream(chat("hi"))
    assert isinstance(await anext(agen), Delta)
    await agen.aclose()
    await fake.wait_disconnect(timeout=1)
    await backend.close()


async def test_cancel_while_waiting_for_headers_closes_the_connection(fake):
    fake.enqueue(Reply.hang_before_headers())
    backend = make(fake)
    agen = backend.stream(chat("hi"))
    task = asyncio.create_task(anext(agen))
    while fake.request_count == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_disconnect(timeout=1)
    await backend.close()


# --- keys in logs -------------------------------------------------------------------------
async def test_key_never_in_debug_logs_or_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue(Reply.text(), Reply.status(401), Reply.status(500), Reply.malformed())
    seen: list[str] = []
    for _ in range(4):
        backend = make(fake)
        try:
            async for _ev in backend.stream(chat("hi")):
                pass
        except BackendError as exc:
            seen.append(str(exc))
        finally:
            await backend.close()
    assert len(seen) == 3
    assert caplog.records, "debug logging produced nothing: the check below would be empty"
    assert KEY not in caplog.text
    assert all(KEY not in s for s in seen)


# --- the fake as a separate process (how end-to-end tests can script it) ------------------
async def test_fake_provider_as_a_subprocess_is_scripted_over_http():
    repo = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.providers",
        "--require-key",
        KEY,
        cwd=repo,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == "READY"
        root = line[1]
        async with aiohttp.ClientSession() as http:
            replies = [asdict(Reply.status(429, retry_after=3)), asdict(Reply.text(["o", "k"]))]
            async with http.post(f"{root}/_fake/enqueue", json={"replies": replies}) as r:
                assert r.status == 200
            cfg = BackendConfig(base_url=f"{root}/v1", model="gpt-4o-mini", api_key=KEY)
            backend = OpenAIBackend("openai", cfg, TIMEOUTS, KeyStore())
            _, err = await failure(backend, chat("hi"))
            assert isinstance(err, RateLimited) and err.retry_after == 3
            deltas, _ = await collect(backend, chat("hi"))
            assert deltas == ["o", "k"]
            async with http.get(f"{root}/_fake/requests") as r:
                recorded = (await r.json())["requests"]
            async with http.get(f"{root}/_fake/stats") as r:
                stats = await r.json()
        assert [q["body"]["model"] for q in recorded] == ["gpt-4o-mini"] * 2
        assert stats["requests"] == 2 and stats["bytes_received"] > 0
    finally:
        proc.terminate()
        await proc.wait()
