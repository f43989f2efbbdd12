"""Fake cloud providers: a real aiohttp server on 127.0.0.1 that speaks OpenAI's and Anthropic's
streaming formats and error bodies, misbehaves on request, and records what it received.

One server answers both protocols, by path:
  POST /v1/chat/completions, /chat/completions  OpenAI chat: `chat.completion.chunk` SSE + [DONE]
  POST /v1/completions, /completions            OpenAI legacy completions: `text_completion` SSE
  POST /v1/messages                             Anthropic Messages: named SSE events
Point an OpenAI backend at `fake.openai_url` (".../v1") and an Anthropic one at
`fake.anthropic_url` (the root). Use one FakeProvider per backend when a test needs two.

In-process (pytest-asyncio):

    async with FakeProvider(require_key="sk-test-1234") as fake:
        fake.enqueue(Reply.text(["Hel", "lo"]), Reply.status(429, retry_after=7))
        ...                                   # the next two requests get these replies, in order
        fake.requests[0].body["temperature"]  # every request: path, headers (lower-case), body
        await fake.wait_disconnect()          # the client closed a connection mid-reply

With the queue empty, `fake.default` answers (a short text stream). `require_key` makes the
fake check `Authorization: Bearer` / `x-api-key` and answer 401 with the provider's real body.

Replies (`Reply.<name>(...)`; every one is plain data, JSON-able for the control API):
  text(pieces, finish="stop"|"length", usage=(prompt, completion))  a normal stream
  status(code, message=None, retry_after=None, retry_after_ms=None, body=None)
                                   an error status with the provider's error JSON
                                   (retry_after: seconds, or an HTTP-date string)
  malformed(after=1)               `after` good pieces, then an event whose JSON is cut off
  cut(after=2, clean=False)        `after` pieces, then the connection is dropped (clean=True:
                                   the HTTP body ends properly, but without [DONE]/message_stop)
  hang_before_headers()            accept the request, never answer
  hang_after_headers(after=0)      send headers (and `after` pieces), then nothing
  trickle(pieces, interval_s)      one piece every `interval_s`, keep-alive comments between
  error_event(error_type="overloaded_error", message="Overloaded", after=1)
                                   a mid-stream `error` event (Anthropic's format; OpenAI-style
                                   servers send `data: {"error": {...}}`)
  oversized(size=2 MiB)            one well-formed event whose text is `size` bytes

As a separate process: `python -m tests.fakes.providers [--port P] [--require-key K]` prints
`READY <root url>` on stdout, then serves until killed. The same behaviours are scripted over
HTTP: POST /_fake/enqueue {"replies": [{"kind": "status", "status": 429, ...}]},
POST /_fake/default {...}, POST /_fake/reset, GET /_fake/requests, GET /_fake/stats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_PIECES = ["Hello", ",", " world", "!"]

# The providers' own error bodies, by status (from their API references).
_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid value for 'temperature'.", None),
    401: (
        "invalid_request_error",
        "Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    403: ("invalid_request_error", "Project does not have access to model {model}.", None),
    404: (
        "invalid_request_error",
        "The model `{model}` does not exist or you do not have access to it.",
        "model_not_found",
    ),
    429: (
        "requests",
        "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 20s.",
        "rate_limit_exceeded",
    ),
    500: (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        None,
    ),
    503: ("server_error", "The engine is currently overloaded, please try again later", None),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "temperature: range: 0..1"),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class Reply:
    """One scripted answer. Build with the classmethods; fields are plain data."""

    kind: str = "text"
    pieces: list[str] = field(default_factory=lambda: list(DEFAULT_PIECES))
    finish: str = "stop"
    usage: tuple[int, int] = (12, 4)
    code: int = 200  # the HTTP status of a `status` reply
    message: str | None = None
    error_type: str | None = None
    body: str | None = None
    retry_after: float | str | None = None
    retry_after_ms: int | None = None
    after: int = 0
    clean: bool = False
    interval_s: float = 0.0
    size: int = 2 * 1024 * 1024
    # Streamed before the text as the provider's separate reasoning: `reasoning_content`
    # deltas (OpenAI-compatible) or a thinking block (Anthropic).
    reasoning: list[str] = field(default_factory=list)
    # False: end without the end marker (`data: [DONE]` / `message_stop`), as
    # text-generation-inference and some llama.cpp builds do after a finish reason.
    end_marker: bool = True

    @classmethod
    def text(
        cls,
        pieces: list[str] | None = None,
        finish: str = "stop",
        usage: tuple[int, int] = (12, 4),
        *,
        reasoning: list[str] | None = None,
        end_marker: bool = True,
    ) -> Reply:
        r = cls("text", list(pieces if pieces is not None else DEFAULT_PIECES), finish, usage)
        r.reasoning, r.end_marker = list(reasoning or []), end_marker
        return r

    @classmethod
    def status(
        cls,
        code: int,
        message: str | None = None,
        retry_after: float | str | None = None,
        retry_after_ms: int | None = None,
        body: str | None = None,
        error_type: str | None = None,
    ) -> Reply:
        return cls(
            "status",
            code=code,
            message=message,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            body=body,
            error_type=error_type,
        )

    @classmethod
    def malformed(cls, after: int = 1) -> Reply:
        return cls("malformed", after=after)

    @classmethod
    def cut(cls, after: int = 2, clean: bool = False) -> Reply:
        return cls("cut", after=after, clean=clean)

    @classmethod
    def hang_before_headers(cls) -> Reply:
        return cls("hang_before_headers")

    @classmethod
    def hang_after_headers(cls, after: int = 0) -> Reply:
        return cls("hang_after_headers", after=after)

    @classmethod
    def trickle(cls, pieces: list[str] | None = None, interval_s: float = 0.2) -> Reply:
        r = cls.text(pieces)
        r.kind, r.interval_s = "trickle", interval_s
        return r

    @classmethod
    def error_event(
        cls, error_type: str = "overloaded_error", message: str = "Overloaded", after: int = 1
    ) -> Reply:
        return cls("error_event", error_type=error_type, message=message, after=after)

    @classmethod
    def oversized(cls, size: int = 2 * 1024 * 1024) -> Reply:
        return cls("oversized", size=size)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        data = dict(data)
        if "usage" in data:
            data["usage"] = tuple(data["usage"])
        return cls(**data)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: bytes
    peer: tuple[str, int] | None = None  # the client's address: same port = reused connection
    reply: str = ""  # the Reply.kind it got
    disconnected: bool = False  # the client went away before the reply finished

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["raw"] = self.raw.decode("utf-8", errors="replace")
        return d


class FakeProvider:
    def __init__(
        self,
        require_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,  # an ssl.SSLContext: serve HTTPS (tests/fakes/tls.py)
    ):
        self.require_key = require_key
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.default = Reply.text()
        self.requests: list[RecordedRequest] = []
        self.bytes_received = 0
        self.disconnects = 0
        self.in_flight = 0  # requests being answered now (a shared fake waits for 0 between tests)
        self._queue: deque[Reply] = deque()
        self._disconnected: asyncio.Condition | None = None  # created in start(), in the loop
        self._stop: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> FakeProvider:
        self._stop = asyncio.Event()
        self._disconnected = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/_fake/enqueue", self._ctl_enqueue)
        app.router.add_post("/_fake/default", self._ctl_default)
        app.router.add_post("/_fake/reset", self._ctl_reset)
        app.router.add_get("/_fake/requests", self._ctl_requests)
        app.router.add_get("/_fake/stats", self._ctl_stats)
        for path in ("/v1/chat/completions", "/chat/completions"):
            app.router.add_post(path, self._openai_chat)
        for path in ("/v1/completions", "/completions"):
            app.router.add_post(path, self._openai_legacy)
        app.router.add_post("/v1/messages", self._anthropic)
        # handler_cancellation: a client that goes away cancels its handler, which is how the
        # fake sees (and counts) disconnects even while it is silent.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProvider:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.root_url

    # --- scripting ------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with `default`."""
        self._queue.extend(replies)

    def reset(self) -> None:
        self._queue.clear()
        self.default = Reply.text()
        self.requests.clear()
        self.bytes_received = 0
        self.disconnects = 0

    @property
    def request_count(self) -> int:
        return len(self.requests)

    async def quiet(self, timeout: float = 10.0) -> None:
        """Wait until no request is being answered (its disconnect, if any, already counted)."""
        async with asyncio.timeout(timeout):
            while self.in_flight:
                await asyncio.sleep(0.01)

    async def wait_disconnect(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until `count` replies in total were cut short by the client going away."""
        assert self._disconnected is not None
        async with self._disconnected:
            await asyncio.wait_for(
                self._disconnected.wait_for(lambda: self.disconnects >= count), timeout
            )

    # --- provider endpoints ---------------------------------------------------------------
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def _openai_legacy(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai-legacy")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def _serve(self, request: web.Request, proto: str) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._serve_one(request, proto)
        finally:
            self.in_flight -= 1

    async def _serve_one(self, request: web.Request, proto: str) -> web.StreamResponse:
        raw = await request.read()
        self.bytes_received += len(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            request.method,
            request.path,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            raw,
        )
        peer = request.transport.get_extra_info("peername") if request.transport else None
        rec.peer = tuple(peer[:2]) if peer else None
        self.requests.append(rec)
        reply = self._queue.popleft() if self._queue else self.default
        if self.require_key is not None and not self._authorized(request, proto):
            reply = Reply.status(401)
        rec.reply = reply.kind
        fmt = _Format(proto, body if isinstance(body, dict) else {}, self.require_key)
        try:
            return await self._answer(request, reply, fmt)
        except (asyncio.CancelledError, ConnectionResetError):
            rec.disconnected = True
            await self._note_disconnect()
            raise

    def _authorized(self, request: web.Request, proto: str) -> bool:
        if proto == "anthropic":
            return request.headers.get("x-api-key") == self.require_key
        return request.headers.get("Authorization") == f"Bearer {self.require_key}"

    async def _note_disconnect(self) -> None:
        assert self._disconnected is not None
        async with self._disconnected:
            self.disconnects += 1
            self._disconnected.notify_all()

    async def _forever(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def _answer(self, request: web.Request, r: Reply, fmt: _Format) -> web.StreamResponse:
        if r.kind == "status":
            return fmt.error_response(r)
        if r.kind == "hang_before_headers":
            await self._forever()
            return web.Response(status=503)
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await resp.prepare(request)
        w = resp.write
        for frame in fmt.opening():
            await w(frame)
        if r.kind in ("text", "trickle"):
            for frame in fmt.reasoning(r.reasoning):
                await w(frame)
            for piece in r.pieces:
                if r.interval_s:
                    await asyncio.sleep(r.interval_s)
                    await w(b": keep-alive\n\n")
                await w(fmt.piece(piece))
            for frame in fmt.closing(r.finish, r.usage, r.end_marker):
                await w(frame)
        elif r.kind in ("cut", "hang_after_headers", "malformed", "error_event"):
            for piece in r.pieces[: r.after]:
                await w(fmt.piece(piece))
            if r.kind == "hang_after_headers":
                await self._forever()
            elif r.kind == "malformed":
                await w(fmt.malformed())
            elif r.kind == "error_event":
                await w(fmt.error_event(r.error_type or "overloaded_error", r.message or ""))
            elif r.kind == "cut" and not r.clean:
                # Drop the connection mid-body: the chunked encoding never terminates.
                assert request.transport is not None
                request.transport.close()
                return resp
        elif r.kind == "oversized":
            await w(fmt.piece("x" * r.size))
            for frame in fmt.closing("stop", r.usage):
                await w(frame)
        else:
            raise ValueError(f"unknown reply kind {r.kind!r}")
        await resp.write_eof()
        return resp

    # --- control API (for the separate-process mode) --------------------------------------
    async def _ctl_enqueue(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.enqueue(*(Reply.from_json(d) for d in data["replies"]))
        return web.json_response({"queued": len(self._queue)})

    async def _ctl_default(self, request: web.Request) -> web.Response:
        self.default = Reply.from_json(await request.json())
        return web.json_response({})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({})

    async def _ctl_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_json() for r in self.requests]})

    async def _ctl_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.request_count,
                "bytes_received": self.bytes_received,
                "disconnects": self.disconnects,
            }
        )


class _Format:
    """Frames in one protocol's wire format, for one request."""

    def __init__(self, proto: str, body: dict[str, Any], key: str | None) -> None:
        self.proto = proto
        self.model = str(body.get("model") or "fake-model")
        so = body.get("stream_options")
        self.include_usage = isinstance(so, dict) and bool(so.get("include_usage"))
        self.key = key
        self.created = int(time.time())
        self.id = f"chatcmpl-fake{self.created}" if proto != "anthropic" else "msg_01Fake"

    # OpenAI ---------------------------------------------------------------------------------
    def _chunk(self, choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
        legacy = self.proto == "openai-legacy"
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion" if legacy else "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [choice] if choice is not None else [],
        }
        if self.include_usage:
            obj["usage"] = usage
        return _sse(obj)

    def _choice(self, text: str | None, finish: str | None) -> dict[str, Any]:
        if self.proto == "openai-legacy":
            return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def opening(self) -> list[bytes]:
        if self.proto == "anthropic":
            start = {
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            }
            block = {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            return [
                _sse(start, "message_start"),
                _sse(block, "content_block_start"),
                _sse({"type": "ping"}, "ping"),
            ]
        if self.proto == "openai":
            first = self._choice(None, None)
            first["delta"] = {"role": "assistant", "content": "", "refusal": None}
            return [self._chunk(first)]
        return []

    def piece(self, text: str) -> bytes:
        if self.proto == "anthropic":
            ev = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
            return _sse(ev, "content_block_delta")
        return self._chunk(self._choice(text, None))

    def reasoning(self, pieces: list[str]) -> list[bytes]:
        if not pieces:
            return []
        if self.proto == "anthropic":
            # A thinking block before the text block (extended thinking's stream shape).
            block = {"type": "thinking", "thinking": ""}
            frames = [
                _sse(
                    {"type": "content_block_start", "index": 0, "content_block": block},
                    "content_block_start",
                )
            ]
            for p in pieces:
                ev = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": p},
                }
                frames.append(_sse(ev, "content_block_delta"))
            frames.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            return frames
        out = []
        for p in pieces:  # DeepSeek / vLLM: the reasoning in `reasoning_content`, content null
            choice = self._choice(None, None)
            choice["delta"] = {"content": None, "reasoning_content": p}
            out.append(self._chunk(choice))
        return out

    def closing(self, finish: str, usage: tuple[int, int], end_marker: bool = True) -> list[bytes]:
        prompt, completion = usage
        if self.proto == "anthropic":
            stop = "max_tokens" if finish == "length" else "end_turn"
            return [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": completion},
                    },
                    "message_delta",
                ),
            ] + ([_sse({"type": "message_stop"}, "message_stop")] if end_marker else [])
        frames = [self._chunk(self._choice(None, finish))]
        if self.include_usage:
            u = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            frames.append(self._chunk(None, u))
        if end_marker:
            frames.append(b"data: [DONE]\n\n")
        return frames

    def malformed(self) -> bytes:
        if self.proto == "anthropic":
            return (
                b"event: content_block_delta\n"
                b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_de\n\n'
            )
        return (
            b'data: {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [{"in\n\n'
        )

    def error_event(self, error_type: str, message: str) -> bytes:
        err = {"type": "error", "error": {"type": error_type, "message": message}}
        if self.proto == "anthropic":
            return _sse(err, "error")
        return _sse(
            {"error": {"message": message, "type": error_type, "param": None, "code": None}}
        )

    def error_response(self, r: Reply) -> web.Response:
        headers: dict[str, str] = {}
        if r.retry_after is not None:
            headers["retry-after"] = (
                r.retry_after if isinstance(r.retry_after, str) else f"{r.retry_after:g}"
            )
        if r.retry_after_ms is not None:
            headers["retry-after-ms"] = str(r.retry_after_ms)
        if r.body is not None:
            return web.Response(
                status=r.code, text=r.body, content_type="text/html", headers=headers
            )
        subst = {"model": self.model, "masked": _mask(self.key or "sk-proj-unknownkey")}
        if self.proto == "anthropic":
            etype, msg = _ANTHROPIC_ERRORS.get(r.code, ("api_error", "Internal server error"))
            payload: dict[str, Any] = {
                "type": "error",
                "error": {
                    "type": r.error_type or etype,
                    "message": (r.message or msg).format(**subst),
                },
                "request_id": "req_011Fake",
            }
        else:
            etype, msg, code = _OPENAI_ERRORS.get(r.code, ("server_error", "error", None))
            payload = {
                "error": {
                    "message": (r.message or msg).format(**subst),
                    "type": r.error_type or etype,
                    "param": None,
                    "code": code,
                }
            }
        return web.json_response(payload, status=r.code, headers=headers)


def _sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    data = json.dumps(obj, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def _mask(key: str) -> str:
    # OpenAI shows the first and last few characters of a wrong key.
    return key[:3] + "*" * 10 + key[-4:] if len(key) > 8 else "****"


def http_date(seconds_from_now: float) -> str:
    """An HTTP-date `seconds_from_now` in the future, for Retry-After."""
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


async def _main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.providers")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--require-key", default=None)
    args = ap.parse_args(argv)
    fake = await FakeProvider(require_key=args.require_key, port=args.port).start()
    print(f"READY {fake.root_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
