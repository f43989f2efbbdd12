"""A cloud backend's TLS is verified with the CA bundle of the window that asks (attack #19
finding H's sibling, item 8): OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR from the process
environment, and a shared daemon's is the first window's. Real forwarders, one real daemon, a
loopback HTTPS provider whose certificate only a test CA (tests/fakes/tls.py) vouches for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cloud_first_config
from tests.e2e.test_shared_daemon import rt, start_raw  # noqa: F401 (rt: a fixture)
from tests.fakes.providers import FakeProvider
from tests.fakes.tls import make_tls

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 4, "backend": "cloud"}


@pytest.mark.parametrize("trusting", ["the first window", "the second window"])
async def test_a_windows_cloud_tls_trusts_its_own_ca_bundle_only(
    rt,  # noqa: F811
    tmp_path: Path,
    tiny_model: Path,
    trusting: str,
) -> None:
    """Steps: window A starts the daemon, window B joins; one of them has SSL_CERT_FILE = the
    test CA (the other the system's bundle); B asks the HTTPS provider for a chat."""
    ca, server = make_tls(tmp_path)
    system = {"SSL_CERT_FILE": "", "SSL_CERT_DIR": ""}  # OpenSSL's built-in defaults
    own = {"SSL_CERT_FILE": str(ca), "SSL_CERT_DIR": ""}
    a_env, b_env = (own, system) if trusting == "the first window" else (system, own)
    async with FakeProvider(ssl_context=server) as fake:
        cfg = cloud_first_config(tmp_path / "c.toml", tiny_model, fake.openai_url, "K", ("chat",))
        a = await start_raw(rt, cfg, env={**a_env, "K": "sk-a"})
        b = None
        try:
            await a.initialize()
            b = await start_raw(rt, cfg, env={**b_env, "K": "sk-b"})
            await b.initialize()
            r = await b.request("mlxd/chat", CHAT)
            if trusting == "the first window":
                # Before: B's request went through with A's CA bundle (a result, and the
                # provider saw B's key), though B's own bundle does not trust the provider.
                assert "error" in r and not fake.requests, r
                assert "certificate" in r["error"]["message"].lower(), r
            else:
                # Before: "certificate verify failed": the daemon verified with A's bundle.
                assert "result" in r and r["result"]["backend"] == "cloud", r
                assert [q.headers.get("authorization") for q in fake.requests] == ["Bearer sk-b"]
        finally:
            for w in (a, b):
                if w is not None:
                    await w.kill()
