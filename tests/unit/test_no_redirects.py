"""Issue #15 case 8: a redirect is never followed. The key and the prompt stay with the
configured server; the 3xx is the attempt's error, readable and redacted."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from mlxd.backends.anthropic import AnthropicBackend
from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.errors import HTTPStatusError
from mlxd.secrets import KeyStore
from mlxd.types import Message, Request

KEY = "sk-ant-REDIRECTSECRET-0123456789abcdefghij"


class ByteCounter:
    """A TCP server on loopback that counts every byte anyone sends it (and answers nothing)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.connections = 0

    async def __aenter__(self) -> ByteCounter:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while chunk := await reader.read(65536):
                self.bytes += len(chunk)
        finally:
            writer.close()


async def redirector(status: int, target: str) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": target + request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner


def make(protocol: str, base_url: str):
    cfg = BackendConfig(protocol=protocol, base_url=base_url, model="m", api_key=KEY)
    cls = OpenAIBackend if protocol == "openai" else AnthropicBackend
    timeouts = TimeoutsConfig(connect_s=1.0, idle_s=1.0)
    return cls(protocol, cfg, timeouts, KeyStore({protocol: cfg}))


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_the_attempts_error_and_the_target_gets_nothing(protocol, status):
    async with ByteCounter() as target:
        # The Location even carries the key: the message must not.
        runner = await redirector(status, f"http://u:{KEY}@127.0.0.1:{target.port}")
        port = runner.addresses[0][1]
        backend = make(protocol, f"http://127.0.0.1:{port}/v1")
        try:
            with pytest.raises(HTTPStatusError) as err:
                request = Request(kind="chat", messages=[Message("user", "the prompt")])
                async for _ in backend.stream(request):
                    pass
        finally:
            await backend.close()
            await runner.cleanup()
        assert target.connections == 0 and target.bytes == 0
    assert err.value.status == status
    text = str(err.value)
    assert "redirect" in text and f"127.0.0.1:{target.port}" in text
    assert KEY not in text and KEY[:12] not in text
