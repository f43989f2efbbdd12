"""Issue 4's bars through the daemon: `mlxd/chat` forced onto a cloud backend (real loopback
fake providers speaking OpenAI's and Anthropic's streaming formats) streams deltas named after
the backend, sends the provider a faithful request, and never lets the API key out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.conftest import daemon
from tests.fakes.providers import FakeProvider, Reply

from .test_router import make_config

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-cloud-e2e-93b7d1c4a8f2e650"
ENV = {"FAKE_KEY": KEY}

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as f:
        yield f


def chat(backend: str, token: str, **extra: Any) -> dict[str, Any]:
    return {
        "messages": MESSAGES,
        "backend": backend,
        "temperature": 0,
        "stop": ["\n\n", "END"],
        "maxTokens": 50,
        "partialResultToken": token,
        **extra,
    }


def cfg_for(tmp_path: Path, tiny_model: Path, protocol: str, url: str) -> Path:
    return make_config(
        tmp_path / "c.toml", tiny_model, {"cloud": (protocol, url)}, {"chat": ["local"]}
    )


async def test_openai_backend_streams_and_sends_a_faithful_request(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cfg_for(tmp_path, tiny_model, "openai", fake.openai_url), env=ENV) as s:
        r = await s.request("mlxd/chat", chat("cloud", "t"))
        assert "".join(s.deltas("t")) == "Hello, world!"  # a turn's deltas share a frame
        assert {v["backend"] for v in s.progress["t"]} == {"cloud"}
        assert r.text == "Hello, world!" and r.backend == "cloud"
        assert r.model == "cloud-model" and r.finishReason == "stop"
        assert (r.usage.promptTokens, r.usage.completionTokens) == (12, 4)
        assert r.attempts == [] and r.timings.firstTokenMs > 0

    (req,) = fake.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.body
    assert body["model"] == "cloud-model"
    assert body["temperature"] == 0 and "temperature" in body
    assert body["stop"] == ["\n\n", "END"]
    assert body["stream"] is True
    assert body["max_tokens"] == 50
    assert body["messages"] == MESSAGES


async def test_anthropic_backend_streams_with_system_at_top_level(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cfg_for(tmp_path, tiny_model, "anthropic", fake.anthropic_url), env=ENV) as s:
        r = await s.request("mlxd/chat", chat("cloud", "t"))
        assert "".join(s.deltas("t")) == "Hello, world!"  # a turn's deltas share a frame
        assert {v["backend"] for v in s.progress["t"]} == {"cloud"}
        assert r.text == "Hello, world!" and r.backend == "cloud"
        assert r.finishReason == "stop"
        assert r.usage.completionTokens == 4

    (req,) = fake.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    body = req.body
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert body["model"] == "cloud-model"
    assert body["temperature"] == 0 and body["stop_sequences"] == ["\n\n", "END"]
    assert body["stream"] is True and body["max_tokens"] == 50


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_key_never_leaves_in_stderr_notifications_or_errors(
    tmp_path: Path,
    tiny_model: Path,
    fake: FakeProvider,
    capfd: pytest.CaptureFixture[str],
    protocol: str,
) -> None:
    """At debug log level, a success and a provider error that echoes the key back: the key
    appears nowhere the daemon writes (stderr, notifications, results, error data)."""
    url = fake.openai_url if protocol == "openai" else fake.anthropic_url
    fake.enqueue(Reply.text(), Reply.status(401, message=f"Incorrect API key provided: {KEY}."))
    seen: list[Any] = []
    async with daemon(
        cfg_for(tmp_path, tiny_model, protocol, url), env={**ENV, "MLXD_LOG_LEVEL": "DEBUG"}
    ) as s:
        seen.append(await s.request("mlxd/chat", chat("cloud", "ok")))
        with pytest.raises(JsonRpcException) as err:
            await s.request("mlxd/chat", chat("cloud", "bad"))
        assert err.value.code == -32803
        assert err.value.data["attempts"][0]["error"].startswith("http 401")
        seen += [err.value.message, err.value.data, s.statuses, s.progress, s.logs]
        seen += [m.message for m in s.messages]
        logs = "\n".join(s.logs)
    assert fake.request_count == 2 and fake.requests[0].reply == "text"
    stderr = capfd.readouterr().err
    # Each record goes one way (window/logMessage while connected, stderr otherwise): both are
    # searched. The debug lines were captured ...
    assert f"cloud: POST {url}" in logs + stderr
    assert KEY not in stderr and KEY not in logs  # ... and hold no key
    assert "[REDACTED]" in json.dumps(seen[2], default=str)  # the echoed key was caught
    assert KEY not in json.dumps(seen, default=str)
