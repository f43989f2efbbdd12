"""Issue #15 proof: every error path of every cloud backend, driven by a hostile provider that
echoes everything it received, with random secrets (API key, header value, URL password): no
8-character piece of any secret appears in the error, the attempt text or any log record
(DEBUG). The daemon-level version (frames, stderr, doctor) is tests/e2e/test_secret_leaks.py."""

from __future__ import annotations

import asyncio
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlxd.backends.anthropic import AnthropicBackend
from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.errors import BackendError
from mlxd.log_redact import install_redaction, uninstall_redaction
from mlxd.secrets import KeyStore
from mlxd.types import Message, Request
from tests.e2e.hostile import MODES, Hostile

secret = st.text(alphabet="0123456789abcdef", min_size=12, max_size=48)


def pieces(value: str) -> list[str]:
    return [value[i : i + 8] for i in range(len(value) - 7)]


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [p for s in secrets for p in pieces(s) if p in text]


async def run_once(protocol: str, mode: str, pad: int, key: str, header: str, password: str):
    async with Hostile(mode, pad) as server:
        root = f"http://ana:{password}@127.0.0.1:{server.port}"
        cfg = BackendConfig(
            protocol=protocol,
            base_url=root + ("/v1" if protocol == "openai" else ""),
            model="m",
            api_key=key,
            headers={"api-key": header},
        )
        keys = KeyStore({"b": cfg})
        cls = OpenAIBackend if protocol == "openai" else AnthropicBackend
        backend = cls("b", cfg, TimeoutsConfig(connect_s=2, idle_s=2), keys)
        install_redaction(keys)
        try:
            request = Request(kind="chat", messages=[Message("user", "hi")])
            async for _ in backend.stream(request):
                pass
        except BackendError as exc:
            return str(exc), keys
        finally:
            uninstall_redaction(keys)
            await backend.close()
        raise AssertionError(f"{mode}: no error")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    protocol=st.sampled_from(["openai", "anthropic"]),
    mode=st.sampled_from(MODES),
    pad=st.integers(0, 400),
    key=secret,
    header=secret,
    password=secret,
)
def test_no_piece_of_any_secret_leaves_through_an_error_path(
    caplog, protocol, mode, pad, key, header, password
):
    secrets = [key, header, password]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        message, keys = asyncio.run(run_once(protocol, mode, pad, key, header, password))
        logged = "\n".join(r.getMessage() for r in caplog.records)
    assert leaks(message, secrets) == [], (mode, message)
    assert leaks(keys.redact(message), secrets) == []
    assert leaks(logged, secrets) == [], logged
