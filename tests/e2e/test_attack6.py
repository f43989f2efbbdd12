"""The session-6 audit of #15 (trust), as an attacker: a hostile server echoes the key where
nothing redacts it yet; odd input through the taint memory. Real daemon over real stdio, raw
SSE bodies from a loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import daemon
from . import test_shared_daemon
from .test_attack_real_input import RawStream, an, an_text, oa
from .test_real_input import ask, cloud_only
from .test_router import ENV, KEY

rt = test_shared_daemon.rt  # a runtime directory of the test's own

ECHOED_MODEL = [
    ("openai", oa({"content": "ok"}, "stop", model=KEY) + b"data: [DONE]\n\n"),
    (
        "anthropic",
        an("message_start", message={"model": KEY, "usage": {"input_tokens": 3}})
        + an_text("ok")
        + an("message_delta", delta={"stop_reason": "end_turn"})
        + an("message_stop"),
    ),
]


@pytest.mark.parametrize(("protocol", "body"), ECHOED_MODEL, ids=["openai", "anthropic"])
async def test_a_key_echoed_as_the_model_name_is_redacted(
    tmp_path: Path, tiny_model: Path, protocol, body
):
    async with RawStream() as raw:
        raw.bodies = [body]
        url = raw.root + "/v1" if protocol == "openai" else raw.root
        fake = type("F", (), {"openai_url": url, "anthropic_url": url})()
        async with daemon(cloud_only(tmp_path, tiny_model, fake, protocol), env=ENV) as s:
            r = await ask(s, "mlxd/chat", "t1")
            assert r.text == "ok"
            assert KEY[:12] not in str(r.model), r.model


@pytest.mark.parametrize("model", [{"name": "x"}, 7, ["m"], "m" * 100_000])
async def test_a_model_name_of_another_shape_is_not_passed_on(
    tmp_path: Path, tiny_model: Path, model
):
    async with RawStream() as raw:
        raw.bodies = [oa({"content": "ok"}, "stop", model=model) + b"data: [DONE]\n\n"]
        fake = type("F", (), {"openai_url": raw.root + "/v1"})()
        async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
            r = await ask(s, "mlxd/chat", "t1")
            assert r.text == "ok"
            assert isinstance(r.model, str) and len(r.model) < 300, str(r.model)[:100]


@pytest.mark.parametrize("shared", ["1", "0"], ids=["shared", "in-process"])
async def test_a_lone_surrogate_in_a_uri_or_a_message_is_served_and_stays_local(
    rt, tmp_path, tiny_model, shared
):
    """JSON "\\ud800" is a string no UTF-8 can hold. A didOpen of such a URI killed the window's
    forwarder (uris.key raised: exit 1, the editor lost mlxd); every request must be answered,
    the excluded document's conversation kept local (0 bytes to the cloud), the window served on."""
    from tests.conftest import cloud_first_config
    from tests.fakes.providers import FakeProvider, Reply

    from .test_shared_daemon import start_raw

    key = "sk-attack6-surrogate-0123456789"
    async with FakeProvider(require_key=key) as fake:
        fake.default = Reply.text(["cloud answer"])
        kinds = ("chat", "complete", "inline")
        extra = 'exclude = ["**/.env"]\n'
        cfg = cloud_first_config(
            tmp_path / "m.toml", tiny_model, fake.openai_url, "K", kinds, extra
        )
        w = await start_raw(rt, cfg, env={"K": key, "MLXD_SHARED": shared})
        try:
            await w.initialize()
            uri = "file:///p/\ud800/.env"
            doc = {"uri": uri, "languageId": "dotenv", "version": 1, "text": "DB_PASSWORD=x\n"}
            w.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": doc},
                }
            )
            ask = [{"role": "user", "content": "please explain this \ud800 settings file"}]
            r = await w.request(
                "mlxd/chat", {"messages": ask, "maxTokens": 2, "textDocument": {"uri": uri}}
            )
            assert r.get("result", {}).get("backend") == "local", r
            follow = [*ask, {"role": "assistant", "content": r["result"]["text"]}]
            follow.append({"role": "user", "content": "and what else?"})
            r = await w.request("mlxd/chat", {"messages": follow, "maxTokens": 2})
            assert r.get("result", {}).get("backend") == "local", r
            assert fake.request_count == 0 and fake.bytes_received == 0, fake.requests
            assert "result" in await w.request("mlxd/models", {})
        finally:
            await w.kill()


async def test_in_shared_mode_the_cloud_switched_off_mid_request_holds_for_the_retry(
    rt, tmp_path, tiny_model
):
    """#15 case 4 through the shared daemon (test_privacy_per_attempt runs in-process): window A
    waits to retry a 429 while window B, another window of the same daemon, keeps the cloud on;
    A switches its cloud off: A's retry must not connect, and B's settings are B's own."""
    import asyncio

    from tests.conftest import write_config
    from tests.fakes.providers import FakeProvider, Reply

    from .test_privacy_per_attempt import options, until_received
    from .test_shared_daemon import start_raw

    cfg = write_config(tmp_path / "m.toml", f'[local]\nmodel = "{tiny_model}"\n')
    async with FakeProvider() as a, FakeProvider() as b:
        a.enqueue(Reply.status(429, retry_after=4))
        windows = []
        try:
            for _ in range(2):
                w = await start_raw(rt, cfg)
                windows.append(w)
                init = {"processId": None, "capabilities": {}, "rootUri": None}
                r = await w.request("initialize", {**init, "initializationOptions": options(a, b)})
                assert "result" in r, r
                w.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            wa, wb = windows
            params = {"messages": [{"role": "user", "content": "private question"}], "maxTokens": 2}
            answer = asyncio.ensure_future(wa.request("mlxd/chat", params))
            await until_received(a)
            off = {"settings": options(a, b, cloud=False)}
            wa.send({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": off})
            result = (await answer)["result"]
            assert result["backend"] == "local", result
            assert a.request_count == 1 and b.request_count == 0 and b.bytes_received == 0
            # B still has the cloud on: its chat goes to `a` (which answers now).
            rb = (await wb.request("mlxd/chat", params))["result"]
            assert rb["backend"] == "a", rb
        finally:
            for w in windows:
                await w.kill()


async def test_in_shared_mode_an_invalid_config_file_keeps_the_cloud_off(rt, tmp_path, tiny_model):
    """#15 case 5 through the shared daemon (test_fail_closed runs in-process): window A's file
    is valid, window B's names a backend only B's editor settings define (invalid on its own)
    while those settings turn the cloud on: B sends 0 bytes; then A's file breaks and A reloads:
    A's cloud is off too."""
    from tests.conftest import write_config
    from tests.fakes.providers import FakeProvider

    from .test_fail_closed import editor_settings
    from .test_shared_daemon import start_raw

    async with FakeProvider() as fake:
        good = write_config(tmp_path / "a.toml", "[routing]\nmax_retries = 0\n")
        bad = write_config(tmp_path / "b.toml", '[routing]\ncloud = false\nchat = ["cloud"]\n')
        init = {**editor_settings(fake.openai_url), "local": {"model": str(tiny_model)}}
        params = {"messages": [{"role": "user", "content": "notes.md says..."}], "maxTokens": 2}
        windows = []
        try:
            for cfg in (good, bad):
                w = await start_raw(rt, cfg)
                windows.append(w)
                base = {"processId": None, "capabilities": {}, "rootUri": None}
                r = await w.request("initialize", {**base, "initializationOptions": init})
                assert "result" in r, r
                w.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            wa, wb = windows
            rb = await wb.request("mlxd/chat", params)
            assert rb["result"]["backend"] == "local" and fake.request_count == 0, rb
            ra = await wa.request("mlxd/chat", params)
            assert ra["result"]["backend"] == "cloud" and fake.request_count == 1, ra
            good.write_text("[routing\n")  # A's file breaks; A's editor reloads
            reload = {"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration"}
            wa.send({**reload, "params": {"settings": init}})
            ra = await wa.request("mlxd/chat", params)
            assert ra["result"]["backend"] == "local", ra
            assert fake.request_count == 1, fake.requests
        finally:
            for w in windows:
                await w.kill()
