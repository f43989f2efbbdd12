"""Issue #15 case 7: an error excerpt is redacted *before* it is cut to length, so a secret
straddling the cut is never half-shown. Every backend, every place an excerpt is made."""

from __future__ import annotations

import json

import pytest

from mlxd.backends.anthropic import AnthropicBackend
from mlxd.backends.http import error_from_json, snippet
from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.errors import BackendError
from mlxd.secrets import KeyStore
from mlxd.types import Message, Request
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TIMEOUTS = TimeoutsConfig(connect_s=1.0, idle_s=1.0)


def pieces(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def leaked(text: str) -> list[str]:
    return [p for p in pieces(KEY) if p in text]


def make(protocol: str, fake: FakeProvider):
    url = fake.openai_url if protocol == "openai" else fake.anthropic_url
    cfg = BackendConfig(protocol=protocol, base_url=url, model="m", api_key=KEY)
    cls = OpenAIBackend if protocol == "openai" else AnthropicBackend
    return cls(protocol, cfg, TIMEOUTS, KeyStore({protocol: cfg}))


def straddling(cut: int) -> str:
    """Text whose secret starts a little before character `cut` and ends after it."""
    return "x" * (cut - 20) + KEY + " tail"


def test_snippet_redacts_before_cutting():
    ks = KeyStore({"a": BackendConfig(protocol="openai", base_url="http://h", api_key=KEY)})
    assert leaked(snippet(straddling(300).encode(), ks.redact)) == []


def test_json_detail_object_redacts_before_cutting():
    ks = KeyStore({"a": BackendConfig(protocol="openai", base_url="http://h", api_key=KEY)})
    data = {"detail": {"echo": "y" * 270 + KEY}}
    assert leaked(error_from_json(data, ks.redact)) == []


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "body",
    [
        straddling(300),  # an HTML/text error page
        json.dumps({"detail": {"echo": "y" * 270 + KEY}}),  # a non-string detail
    ],
    ids=["text", "json-detail"],
)
async def test_status_error_excerpt_never_holds_part_of_the_key(protocol, body):
    async with FakeProvider() as fake:
        fake.enqueue(Reply.status(500, body=body))
        backend = make(protocol, fake)
        with pytest.raises(BackendError) as err:
            async for _ in backend.stream(Request(kind="chat", messages=[Message("user", "hi")])):
                pass
        await backend.close()
    assert leaked(str(err.value)) == [], str(err.value)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_invalid_stream_json_excerpt_never_holds_part_of_the_key(protocol):
    async_backend = make_offline(protocol)
    bad = "{" + "z" * 180 + KEY
    with pytest.raises(BackendError) as err:
        async_backend._parse(bad)
    assert leaked(str(err.value)) == [], str(err.value)


def make_offline(protocol: str):
    cfg = BackendConfig(protocol=protocol, base_url="http://127.0.0.1:9", model="m", api_key=KEY)
    cls = OpenAIBackend if protocol == "openai" else AnthropicBackend
    return cls(protocol, cfg, TIMEOUTS, KeyStore({protocol: cfg}))
