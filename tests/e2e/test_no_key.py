"""Issue 18 item 12: `mlxd/status` says `no_key` for a backend that needs an API key and has
none, before any request fails for want of it (it said `ok`); a key handed over makes it `ok`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_protocol_errors import Raw
from tests.fakes import ENV_FILE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.fakes.FileKeyring")
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "keyring.json"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MLXD_TEST_SET_KEY", "sk-from-env")
    monkeypatch.delenv("MLXD_TEST_NO_SUCH_KEY", raising=False)


def _config(tmp_path: Path, tiny_model: Path, cloud: bool = True) -> Path:
    cfg = tmp_path / "mlxd.toml"
    backend = '[backends.{}]\nprotocol = "{}"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    cfg.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n'
        + backend.format("needs", "openai")
        + 'api_key_env = "MLXD_TEST_NO_SUCH_KEY"\n'
        + backend.format("claude", "anthropic")
        + backend.format("keyless", "openai")
        + backend.format("envkey", "openai")
        + 'api_key_env = "MLXD_TEST_SET_KEY"\n'
        + f"[routing]\ncloud = {'true' if cloud else 'false'}\n"
    )
    return cfg


async def _status_where(d: Raw, pred: Any, timeout: float = 20) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            for f in reversed(d.frames):
                if f.get("method") == "mlxd/status" and pred(f["params"]["backends"]):
                    return f["params"]["backends"]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


async def test_a_backend_without_its_key_is_no_key_until_one_is_handed_over(
    tmp_path: Path, tiny_model: Path
) -> None:
    d = await Raw.start(_config(tmp_path, tiny_model))
    await d.initialize()
    backends = await _status_where(d, lambda b: b.get("needs") == "no_key")
    assert backends == {
        "local": "ok",
        "needs": "no_key",
        "claude": "no_key",  # Anthropic always needs a key
        "keyless": "ok",  # an OpenAI-compatible server without api_key_env may need none
        "envkey": "ok",
    }
    r = await d.request("mlxd/setApiKey", {"backend": "needs", "apiKey": "sk-handed-over"})
    assert r.get("result") == {}, r
    backends = await _status_where(d, lambda b: b.get("needs") == "ok")
    assert backends["claude"] == "no_key"
    await d.request("shutdown")
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0


async def test_cloud_off_is_still_unconfigured(tmp_path: Path, tiny_model: Path) -> None:
    d = await Raw.start(_config(tmp_path, tiny_model, cloud=False))
    await d.initialize()
    backends = await _status_where(d, lambda b: "needs" in b)
    await asyncio.sleep(0.5)  # a keyring lookup, were one started, would have announced itself
    last = await _status_where(d, lambda b: "needs" in b)
    assert backends["needs"] == last["needs"] == "unconfigured"
    await d.request("shutdown")
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
