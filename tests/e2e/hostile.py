"""A hostile provider on loopback: it answers every request by echoing back everything it
received (every header value, Basic credentials decoded, the URL, the body), in every shape a
provider or proxy can fail: error statuses with JSON, an HTML page, a JSON 200, an SSE error
event, malformed SSE JSON, a redirect. `pad` characters go in front of the echo, so a secret
lands anywhere relative to the places messages are cut."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

MODES = [
    "json-400", "json-401", "json-403", "json-404", "json-429", "json-500", "json-503",
    "html-502", "json-200", "sse-error", "sse-malformed", "redirect", "detail-object",
]  # fmt: skip


def echo_of(request: web.Request, body: bytes) -> str:
    parts = [str(request.url), body.decode("utf-8", "replace")]
    for name, value in request.headers.items():
        parts.append(f"{name}: {value}")
        if name.lower() == "authorization" and value.startswith("Basic "):
            parts.append(base64.b64decode(value[6:]).decode("utf-8", "replace"))
    return " | ".join(parts)


class Hostile:
    def __init__(self, mode: str = "json-401", pad: int = 0) -> None:
        self.mode, self.pad = mode, pad
        self.requests = 0

    async def __aenter__(self) -> Hostile:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        echo = "~" * self.pad + echo_of(request, await request.read())
        kind, _, code = self.mode.partition("-")
        anthropic = request.path.endswith("/messages")
        if kind == "json" and code != "200":
            err: dict[str, Any] = {"message": echo, "type": "invalid_request_error", "code": echo}
            payload = {"type": "error", "error": err} if anthropic else {"error": err}
            return web.json_response(payload, status=int(code), headers={"retry-after": "0"})
        if kind == "json":
            return web.json_response({"error": echo})
        if kind == "html":
            return web.Response(status=502, text=f"<html>{echo}</html>", content_type="text/html")
        if kind == "detail":
            return web.json_response({"detail": {"echo": echo}}, status=422)
        if kind == "redirect":
            return web.Response(status=307, headers={"Location": f"http://127.0.0.1:9/{echo}"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if kind == "sse" and code == "error":
            data = {"type": "error", "error": {"type": "api_error", "message": echo}}
            event = b"event: error\n" if anthropic else b""
            await resp.write(event + b"data: " + json.dumps(data).encode() + b"\n\n")
        else:
            await resp.write(b"data: {" + echo.encode() + b"\n\n")
        await resp.write_eof()
        return resp
