"""Issue #15 case 6: secrets beyond `api_key` -- a key in `headers`, a password in `base_url`,
a key-like query parameter -- are redacted everywhere and fall under the 0600 rule; a
`base_url` with user-info plus an API key is an ordinary working backend."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlxd.backends.anthropic import AnthropicBackend
from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, ConfigError, TimeoutsConfig, load_file
from mlxd.errors import BackendError
from mlxd.secrets import KeyStore
from mlxd.types import Message, Request
from tests.fakes.providers import FakeProvider, Reply

HEADER_KEY = "azure-HDR-7f3c91d2e4b5a6f8"
PASSWORD = "pw-URL-c0ffee5eed1234"
QUERY_KEY = "qk-QRY-90817263544aa"
API_KEY = "sk-API-5150deadbeef0000"
REPO = Path(__file__).resolve().parents[2]


def backend(protocol: str, base_url: str, **kw):
    cfg = BackendConfig(protocol=protocol, base_url=base_url, model="m", **kw)
    cls = OpenAIBackend if protocol == "openai" else AnthropicBackend
    return cls("b", cfg, TimeoutsConfig(connect_s=1, idle_s=1), KeyStore({"b": cfg}))


def with_userinfo(url: str, user: str = "ana") -> str:
    return url.replace("http://", f"http://{user}:{PASSWORD}@")


async def drain(b) -> None:
    try:
        async for _ in b.stream(Request(kind="chat", messages=[Message("user", "hi")])):
            pass
    finally:
        await b.close()


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_provider_echoing_every_secret_gets_them_redacted(protocol):
    async with FakeProvider() as fake:
        echo = f"bad credentials {HEADER_KEY} {PASSWORD} {API_KEY}"
        fake.enqueue(Reply.status(401, message=echo))
        url = fake.openai_url if protocol == "openai" else fake.anthropic_url
        b = backend(protocol, with_userinfo(url), api_key=API_KEY, headers={"api-key": HEADER_KEY})
        with pytest.raises(BackendError) as err:
            await drain(b)
    text = str(err.value)
    for secret in (HEADER_KEY, PASSWORD, API_KEY):
        assert secret[:8] not in text and secret[-8:] not in text, text
    assert "bad credentials" in text


def test_every_secret_kind_is_learned_for_redaction():
    cfg = BackendConfig(
        base_url=f"https://ana:{PASSWORD}@gw.example/v1?api_key={QUERY_KEY}",
        headers={"Ocp-Apim-Subscription-Key": HEADER_KEY, "HTTP-Referer": "https://app.example"},
        model="m",
    )
    keys = KeyStore({"gw": cfg})
    text = keys.redact(
        f"{PASSWORD} {QUERY_KEY} {HEADER_KEY} https://u:short@h/ https://app.example"
    )
    assert text == "[REDACTED] [REDACTED] [REDACTED] https://[REDACTED]@h/ https://app.example"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_userinfo_plus_an_api_key_is_not_an_internal_error(protocol):
    async with FakeProvider() as fake:
        url = fake.openai_url if protocol == "openai" else fake.anthropic_url
        await drain(
            backend(protocol, url.replace("http://", f"http://ana:{PASSWORD}@"), api_key=API_KEY)
        )
        if protocol == "openai":  # keyless: Basic auth from the user-info
            await drain(backend(protocol, url.replace("http://", f"http://ana:{PASSWORD}@")))
    assert API_KEY in str(fake.requests[0].headers)  # the API key authorizes
    if protocol == "openai":
        assert fake.requests[1].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    "entry",
    [
        f'headers = {{ "api-key" = "{HEADER_KEY}" }}',
        f'headers = {{ "Authorization" = "Bearer {API_KEY}" }}',
        f'headers = {{ "X-Auth-Token" = "{HEADER_KEY}" }}',
        f'headers = {{ "X-JWT-Assertion" = "{HEADER_KEY}" }}',  # any name, a long value
        f'headers = {{ "X-Gateway-Pass" = "{HEADER_KEY}" }}',
        f'headers = {{ "Cookie" = "s={HEADER_KEY}" }}',
        f'base_url = "https://ana:{PASSWORD}@gw.example/v1"',
        f'base_url = "https://gw.example/v1?api_key={QUERY_KEY}"',
    ],
)
def test_a_readable_file_holding_any_secret_is_refused(tmp_path, entry):
    text = f'[backends.gw]\nmodel = "m"\n{entry}\n'
    if "base_url" not in entry:
        text += 'base_url = "https://gw.example/v1"\n'
    path = tmp_path / "mlxd.toml"
    path.write_text(text)
    if os.name == "posix":
        path.chmod(0o644)
        with pytest.raises(ConfigError, match="readable by others"):
            load_file(path)
    path.chmod(0o600)
    assert load_file(path)["backends"]["gw"]


def test_harmless_headers_are_not_secrets(tmp_path):
    path = tmp_path / "mlxd.toml"
    path.write_text(
        '[backends.r]\nbase_url = "https://x/v1"\nmodel = "m"\n'
        'headers = { "HTTP-Referer" = "https://myapp.example", "X-Title" = "My editor app", '
        '"OpenAI-Organization" = "org-0123456789abcdef", "X-Env" = "short" }\n'
    )
    path.chmod(0o644)
    assert load_file(path)
    keys = KeyStore({"r": BackendConfig(**load_file(path)["backends"]["r"])})
    text = "https://myapp.example My editor app org-0123456789abcdef short"
    assert keys.redact(text) == text


BASIC_PW = "basicPw-0123456789"


@pytest.mark.parametrize(
    "name, value, echoed",
    [
        (
            "Authorization",
            "Basic " + base64.b64encode(f"ana:{BASIC_PW}".encode()).decode(),
            [BASIC_PW, f"ana:{BASIC_PW}"],
        ),
        (
            "Proxy-Authorization",
            "Basic " + base64.b64encode(f"bob:{BASIC_PW}".encode()).decode(),
            [BASIC_PW],
        ),
        ("Cookie", "session=ckv-0123456789abcdef; theme=dark", ["ckv-0123456789abcdef"]),
        ("X-Gateway", "sid=gw0123456789abcd", ["gw0123456789abcd", "sid=gw0123456789abcd"]),
        ("X-JWT-Assertion", "eyJhbGciOi.jwt-0123456789", ["eyJhbGciOi.jwt-0123456789"]),
        ("X-Custom-Credential-Header", "Token tk-0123456789abcdef", ["tk-0123456789abcdef"]),
    ],
)
def test_a_header_secret_is_learned_in_every_form_a_server_echoes(name, value, echoed):
    keys = KeyStore({"b": BackendConfig(base_url="https://x/v1", model="m", headers={name: value})})
    for form in echoed:
        assert form not in keys.redact(f"rejected {form} here"), form
    assert keys.redact("theme=dark lang=english") == "theme=dark lang=english"


async def test_doctor_never_prints_url_userinfo_or_query_keys(tmp_path, tiny_model):
    path = tmp_path / "doctor.toml"
    path.write_text(
        f'[local]\nmodel = "{tiny_model}"\n[backends.gw]\nmodel = "m"\n'
        f'base_url = "https://ana:{PASSWORD}@gw.example/v1?key={QUERY_KEY}"\n'
        f'headers = {{ "api-key" = "{HEADER_KEY}" }}\n'
    )
    path.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(REPO / "daemon")}
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mlxd", "doctor", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "backend gw" in text
    for secret in (PASSWORD, QUERY_KEY, HEADER_KEY):
        assert secret[:8] not in text, text
