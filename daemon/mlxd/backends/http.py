"""What the cloud backends share: one pooled aiohttp session per backend, timeouts, and the
mapping of every HTTP failure to the typed errors in base.py.

Timeouts here: `connect_s` (TCP + TLS) and `idle_s` (the longest silence on the socket, which
also covers the wait for the response headers). First-token and total deadlines belong to the
router, which cancels the stream; cancellation (or `aclose()` of the consuming generator) closes
the response, and with it the connection, at once.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from mlxd.backends.pools import HTTPPools
from mlxd.backends.sse import MAX_EVENT_BYTES, SSEEvent, SSEParser
from mlxd.config import TimeoutsConfig
from mlxd.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConnectError,
    HTTPStatusError,
    ModelNotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    StreamCut,
    Timeout,
)

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024  # an error body is read up to this size
MAX_STREAM_BYTES = 64 * 1024 * 1024  # a streamed answer beyond this is not a chat answer
_SNIPPET = 300  # characters of a non-JSON error body kept in the message

Redact = Callable[[str], str]  # text -> text with every known secret replaced


class HTTPClient:
    """One backend's connection pool. Created cheaply; the session opens on first use."""

    def __init__(
        self,
        backend: str,
        timeouts: TimeoutsConfig,
        redact: Callable[[str], str] = lambda s: s,
        scrub: Callable[[str], str] = lambda s: s,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_stream_bytes: int = MAX_STREAM_BYTES,
        pools: HTTPPools | None = None,
    ) -> None:
        self.backend = backend
        self.pools = pools  # the process's pools (pools.py); None: a session of its own
        self.timeouts = timeouts
        self.redact = redact
        self.scrub = scrub  # every string of a request body, before it is sent (keys out)
        self.max_event_bytes = max_event_bytes
        self.max_stream_bytes = max_stream_bytes
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self.pools is not None:
            return self.pools.session(self, self.timeouts)
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session belongs to one event loop; a new loop (tests, a restart) gets its own.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.timeouts.connect_s,
                    sock_read=self.timeouts.idle_s,
                ),
                connector=aiohttp.TCPConnector(limit=16, ttl_dns_cache=300),
                raise_for_status=False,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self.pools is not None:
            await self.pools.release(self)
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @asynccontextmanager
    async def post_stream(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a JSON body and yield the response once it is a 2xx event stream.

        Raises the typed error for a failed connection or an error status. On leaving the
        block by an exception or cancellation the connection is closed, not pooled.
        """
        session = self._get_session()
        url, headers = _userinfo_as_header(url, headers)
        try:
            # Never follow a redirect: it would carry the key and the prompt to another host.
            data = json.dumps(_scrubbed(body, self.scrub)).encode()
            resp = await session.post(url, data=data, headers=headers, allow_redirects=False)
        except BaseException as exc:
            raise self._map_exc(exc, headers_received=False) from None
        try:
            if resp.status >= 400:
                raise await self._status_error(resp, url)
            if resp.status >= 300:
                raise self._redirect_error(resp)
            ctype = resp.content_type
            if ctype in ("application/json", "text/html"):
                # A 200 that is not a stream: a proxy's error page, or a server that ignored
                # `stream: true`. Either way not something to parse as SSE.
                raw = await self._read_limited(resp, MAX_ERROR_BODY)
                msg = error_message(raw, self.redact) or snippet(raw, self.redact)
                raise ProtocolError(self.redact(f"expected an event stream, got {ctype}: {msg}"))
            yield resp
        except BaseException as exc:
            resp.close()
            if isinstance(exc, BackendError | asyncio.CancelledError | GeneratorExit):
                raise
            raise self._map_exc(exc, headers_received=True) from None
        else:
            resp.release()

    async def events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
        """The response body as SSE events. Ends quietly at EOF: the caller, who knows its
        protocol's end marker, decides whether that was a cut."""
        parser = SSEParser(self.max_event_bytes)
        total = 0
        while True:
            try:
                chunk = await resp.content.readany()
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                    raise
                raise self._map_exc(exc, headers_received=True) from None
            if not chunk:
                return
            total += len(chunk)
            if total > self.max_stream_bytes:
                raise ProtocolError(f"response exceeds {self.max_stream_bytes} bytes")
            for ev in parser.feed(chunk):
                yield ev

    # --- error mapping --------------------------------------------------------------------
    def _map_exc(self, exc: BaseException, headers_received: bool) -> BaseException:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit | BackendError):
            return exc
        t = self.timeouts
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return Timeout(f"no connection within {t.connect_s:g}s", phase="connect")
        if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            what = "data" if headers_received else "response headers"
            return Timeout(f"no {what} for {t.idle_s:g}s", phase="idle")
        if isinstance(exc, aiohttp.ClientConnectorError):
            # Refused, DNS, TLS: the OS error text, without the full URL (it has no key, but a
            # query string could).
            return ConnectError(self.redact(f"{exc.host}:{exc.port}: {_os_reason(exc)}"))
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            where = "mid-stream" if headers_received else "before answering"
            return StreamCut(f"server closed the connection {where}")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return StreamCut(f"response body cut short: {_first_line(exc, self.redact)}")
        if isinstance(exc, aiohttp.ClientResponseError):
            # Garbage where an HTTP response should be.
            return ProtocolError(self.redact(f"bad HTTP response: {exc.message}"))
        if isinstance(exc, aiohttp.InvalidURL):
            return ConnectError(self.redact(f"invalid URL: {exc}"))
        if isinstance(exc, aiohttp.ClientError | OSError):
            return ConnectError(f"{type(exc).__name__}: {_first_line(exc, self.redact)}")
        return exc

    async def _read_limited(self, resp: aiohttp.ClientResponse, limit: int) -> bytes:
        buf = bytearray()
        try:
            while len(buf) < limit:
                chunk = await resp.content.read(limit - len(buf))
                if not chunk:
                    break
                buf += chunk
        except (TimeoutError, aiohttp.ClientError):
            pass  # keep what arrived: the status alone is worth reporting
        return bytes(buf)

    async def _status_error(self, resp: aiohttp.ClientResponse, url: str) -> HTTPStatusError:
        raw = await self._read_limited(resp, MAX_ERROR_BODY)
        message = error_message(raw, self.redact)
        if not message:
            text = snippet(raw, self.redact)
            message = f"{resp.status} {resp.reason or ''} at {url}".strip()
            if text:
                message += f": {text}"
        return status_error(resp.status, self.redact(message), retry_after(resp.headers))

    def _redirect_error(self, resp: aiohttp.ClientResponse) -> HTTPStatusError:
        # A redirect is the attempt's error, never retried: the configured URL is wrong or the
        # server is not the one configured.
        where = excerpt(resp.headers.get("location", "(no Location)"), self.redact, 200)
        reason = f"{resp.status} {resp.reason or ''}".strip()
        return HTTPStatusError(
            f"{reason}: redirected to {where}; redirects are not followed "
            "(set base_url to the final address)",
            resp.status,
        )


def status_error(status: int, message: str, retry: float | None = None) -> HTTPStatusError:
    """The typed error for an HTTP error status."""
    if status in (401, 403):
        return AuthError(message, status)
    if status == 404:
        return ModelNotFound(message, status)
    if status == 429:
        return RateLimited(message, status, retry)
    if status in (400, 413, 422):
        return BadRequest(message, status)
    if status >= 500 or status == 408:
        # 503 and Anthropic's 529 (overloaded) may say when to come back.
        return ServerError(message, status, retry)
    return HTTPStatusError(message, status, retry)


def retry_after(headers: Any) -> float | None:
    """Seconds to wait, from OpenAI's `retry-after-ms` or the standard `Retry-After`
    (delta-seconds or HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(raw: bytes, redact: Redact) -> str:
    """The provider's own message from an error body, redacted with `redact`, or "" if it has
    none.

    OpenAI: {"error": {"message", "type", "code"}}; Anthropic: {"type": "error", "error":
    {"type", "message"}}; other compatible servers: {"error": "text"}, {"detail": ...},
    {"message": ...}.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""
    return error_from_json(data, redact)


def error_from_json(data: Any, redact: Redact) -> str:
    """The message of a provider's error object (see error_message), redacted, "" if none."""
    if not isinstance(data, dict):
        return ""
    err = data.get("error")
    if isinstance(err, dict):
        msg = redact(str(err.get("message") or "").strip())
        tags = [redact(str(err[k])) for k in ("type", "code") if err.get(k)]
        tags = list(dict.fromkeys(tags))  # Anthropic repeats nothing, OpenAI may
        if msg and tags:
            return f"{msg} ({', '.join(tags)})"
        return msg or ", ".join(tags)
    if isinstance(err, str) and err.strip():
        return redact(err.strip())
    for key in ("detail", "message"):
        val = data.get(key)
        if isinstance(val, str) and val.strip():
            return redact(val.strip())
        if val:
            return excerpt(json.dumps(val), redact)
    return ""


def excerpt(text: str, redact: Redact, limit: int = _SNIPPET) -> str:
    """At most `limit` characters of `text` for a message, redacted *before* it is cut: a
    secret cut in half is no longer recognised by `redact`."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + "..."


def snippet(raw: bytes, redact: Redact) -> str:
    """A non-JSON error body as one line of at most _SNIPPET characters, redacted."""
    text = raw.decode("utf-8", errors="replace").strip()
    return excerpt(" ".join(text.split()), redact)


def _userinfo_as_header(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """`https://user:pass@host/...` -> the URL without user-info, and Basic auth in the headers
    unless they already authorize (aiohttp refuses both at once, and the user-info must not
    travel on into messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, headers
    host = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    if any(k.lower() == "authorization" for k in headers):
        return bare, headers
    user, pw = (urllib.parse.unquote(p or "") for p in (parts.username, parts.password))
    basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
    return bare, {**headers, "Authorization": f"Basic {basic}"}


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    err = exc.os_error
    return err.strerror or str(err) if isinstance(err, OSError) else str(err)


def _first_line(exc: BaseException, redact: Redact) -> str:
    text = redact(str(exc)).strip().splitlines()
    return excerpt(text[0], redact) if text else type(exc).__name__


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` (a JSON body) with `scrub` applied to every string in it, keys included."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, scrub) for v in value]
    return value
