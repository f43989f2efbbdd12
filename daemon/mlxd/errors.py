"""The one interface every backend implements, and the typed errors the router acts on.

A backend turns a `Request` into an async stream of `Delta`s ending with one `Done`.
Closing the stream early (the consumer stops iterating, or its task is cancelled) must stop
the work behind it: local generation stops within one decode step, an HTTP stream is closed.
Backends know nothing of LSP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
Kind = Literal["chat", "complete", "inline"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True)
class Request:
    """What the router hands a backend. `messages` for chat; `prefix`/`suffix` for completion."""

    kind: Kind
    messages: list[Message] = field(default_factory=list)
    prefix: str = ""
    suffix: str = ""
    language: str = ""
    # Context for completion kinds: a comment block naming the file, maybe neighbour snippets.
    header: str = ""
    max_tokens: int | None = None  # None: the backend's configured default
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)
    # A ready prompt for completion kinds (e.g. a FIM template the inline engine built for a
    # local model); when set, local backends use it verbatim instead of prefix/suffix.
    prompt: str | None = None
    # Continue an answer another backend started (mid-stream fallback): the text so far.
    assistant_prefix: str = ""
    # Stop generating after this long and finish with what there is (inline's time cap).
    max_time_s: float | None = None
    # Stop once this many lines with text in them are complete (inline's one-line answers).
    max_lines: int | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    model: str


Event = Delta | Done


class Backend(Protocol):
    name: str
    is_local: bool

    def stream(self, request: Request) -> AsyncIterator[Event]:
        """Yield Deltas then exactly one Done; raise a BackendError on failure."""
        ...

    async def close(self) -> None: ...


# --- errors -------------------------------------------------------------------------------
class BackendError(Exception):
    """Base of every failure a backend reports. `code` is a short stable tag for `attempts`."""

    code = "error"
    # Whether trying the next backend in the chain makes sense.
    fallback = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectError(BackendError):
    """Refused, DNS or TLS failure: nothing reached the provider."""

    code = "connect"


class Timeout(BackendError):
    """No answer in time. `phase` is connect | first_token | idle | total."""

    code = "timeout"

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class HTTPStatusError(BackendError):
    """The provider answered with an error status; `message` is the provider's own text."""

    code = "http"

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"http {self.status}: {self.message}"


class AuthError(HTTPStatusError):
    code = "auth"  # 401 / 403


class ModelNotFound(HTTPStatusError):
    code = "model_not_found"  # 404


class RateLimited(HTTPStatusError):
    code = "rate_limited"  # 429 (retry_after from the header, if any)


class ServerError(HTTPStatusError):
    code = "server"  # 5xx


class BadRequest(HTTPStatusError):
    """400/422: the request itself is wrong; does not count against the circuit breaker."""

    code = "bad_request"


class ProtocolError(BackendError):
    """Malformed stream: bad SSE, bad JSON, an `error` event mid-stream."""

    code = "protocol"


class StreamCut(BackendError):
    """The stream ended before its end marker."""

    code = "stream_cut"


class ModelError(BackendError):
    """The local model cannot be loaded or run (missing path, corrupt weights, too big)."""

    code = "model"


class NotConfigured(BackendError):
    """E.g. no API key for a backend that needs one."""

    code = "unconfigured"
