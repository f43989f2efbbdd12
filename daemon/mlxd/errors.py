"""The daemon's error tree, at the bottom so every layer can raise and read it.

Backend failures (httpx-style: `BackendError` > `HTTPStatusError` > `RateLimited` ...) carry
the policy the router acts on as class data: `retryable` (wait and try the same backend again,
before any token streamed) and `counts_against_breaker` (a failure of the backend's health, not
of the request). Above them: what the router, the app and the config raise, and the wording of
msgspec's validation errors shared by the config and the wire.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import msgspec

if TYPE_CHECKING:
    from .types import Attempt


class BackendError(Exception):
    """Base of every failure a backend reports. `code` is a short stable tag for `attempts`."""

    code = "error"
    # The policy the router reads (class data, so a new error kind states its own):
    # whether waiting and trying the same backend again may help (before any token streamed),
    retryable = False
    # and whether the failure says something about the backend's health (its circuit breaker).
    counts_against_breaker = True
    retry_after: float | None = None  # seconds the provider asked to wait before a retry

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectError(BackendError):
    """Refused, DNS or TLS failure: nothing reached the provider."""

    code = "connect"


class Timeout(BackendError):
    """No answer in time. `phase` is connect | first_token | idle | total | bound."""

    code = "timeout"

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase

    @property
    def counts_against_breaker(self) -> bool:  # type: ignore[override]
        """Phase "bound": the inline request's own time bound ran out (a cold prompt too long
        to prefill in inline.max_ms), which says nothing about the backend's health."""
        return self.phase != "bound"


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
    retryable = True  # "busy, come back": wait (Retry-After, else backoff with jitter)


class ServerError(HTTPStatusError):
    code = "server"  # 5xx

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """503 says "busy, come back"; another 5xx only when it says when (Retry-After),
        otherwise the next backend is the better bet."""
        return self.status == 503 or self.retry_after is not None


class BadRequest(HTTPStatusError):
    """400/422: the request itself is wrong; does not count against the circuit breaker."""

    code = "bad_request"
    counts_against_breaker = False


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
    """E.g. no API key for a backend that needs one, or a backend a reload removed."""

    code = "unconfigured"
    counts_against_breaker = False


class ContextOverflow(BackendError):
    """The prompt does not fit the local model's context window, even trimmed."""

    code = "context_length"


class Unexpected(BackendError):
    """Anything else a backend raised: a bug, a key holding a newline that the HTTP library
    refuses, a session closed under it. Still one failed attempt; the chain goes on."""

    code = "internal"


def as_failure(exc: Exception) -> BackendError:
    """The error tree's one decision on what a backend raised: a BackendError stays itself,
    anything else (never a cancellation: that is a BaseException) becomes `Unexpected` with a
    readable one-line reason."""
    if isinstance(exc, BackendError):
        return exc
    lines = str(exc).strip().splitlines()
    detail = f": {lines[0][:200]}" if lines else ""
    err = Unexpected(f"{type(exc).__name__}{detail}")
    err.__cause__ = exc
    return err


# --- above the backends: the router, the app, the config ----------------------------------
class AllFailed(Exception):
    """Every backend in the chain was skipped or failed; `attempts` says why, in order."""

    def __init__(self, attempts: list[Attempt]) -> None:
        summary = "; ".join(f"{a.backend}: {a.error}" for a in attempts) or "no backend"
        super().__init__(f"all backends failed ({summary})")
        self.attempts = attempts

    @property
    def out_of_time(self) -> bool:
        """Whether the request's own time bound (inline.max_ms) ended every backend it tried,
        each a local model (`Attempt.timed_out`; skips aside): an empty answer by design (a
        prompt too long to prefill in time, a busy machine), not a failure."""
        tried = [a for a in self.attempts if a.timed_out or not a.error.startswith("skipped")]
        return bool(tried) and all(a.timed_out for a in tried)


class UnknownBackend(ValueError):
    """A request forced a backend the config does not name."""


class UnknownModel(ValueError):
    """A request's `model` is neither a routing alias nor a configured model."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the problem."""


# --- msgspec's validation errors, worded for people (config files and wire params) ---------
# A value that may be a key pasted into the wrong field: 16+ characters, no spaces, letters and
# digits. Messages never quote such a value (they reach logs, status and `mlxd doctor`).
KEYLIKE = re.compile(r"(?=[^\s]*[A-Za-z])(?=[^\s]*\d)[^\s'`]{16,}")
HIDDEN = "<a value that looks like a key, not shown>"


def shown(value: str) -> str:
    """`value` quoted for a message, or HIDDEN if it looks like a key."""
    return HIDDEN if KEYLIKE.fullmatch(value) else repr(value)


def field_message(msg: str, root: str = "") -> str:
    """'Expected `int`, got `str` - at `$.maxTokens`' -> 'maxTokens: expected `int`, got `str`'."""
    text, sep, where = msg.rpartition(" - at `")
    if not sep:
        text, where = msg, ""
    path = ".".join(p for p in (root, where.rstrip("`").removeprefix("$").lstrip(".")) if p)
    for lead, what in (
        ("Object contains unknown field ", "unknown field"),
        ("Object missing required field ", "required"),
    ):
        if text.startswith(lead):
            name = text.removeprefix(lead).strip("`")
            name = name if shown(name) != HIDDEN else HIDDEN
            return f"{path + '.' if path else ''}{name}: {what}"
    lowered = text[:1].lower() + text[1:]
    return f"{path}: {lowered}" if path else lowered


def with_choices(message: str, root: Any) -> str:
    """ "inline.multi_line: invalid enum value 'x'" (a field_message) plus the values the key
    takes, read from its Literal type: the path is walked from `root` by the wire names of
    Struct fields, list items (`[0]`) and table entries (`backends.<name>`)."""
    path, sep, text = message.partition(": ")
    if not sep or not text.startswith("invalid enum value"):
        return message
    kind: Any = root
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", path):
        kind = _bare(kind)
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            kind = {f.encode_name: f.type for f in msgspec.structs.fields(kind)}.get(part)
        elif get_origin(kind) in (list, dict):
            kind = get_args(kind)[-1]  # the item's type, whatever the index or key
        else:
            return message
    kind = _bare(kind)
    if get_origin(kind) is not Literal:
        return message
    return f"{message}; expected one of {', '.join(map(repr, get_args(kind)))}"


def _bare(kind: Any) -> Any:
    """The type inside `Annotated[...]` (constraints do not change the shape)."""
    return get_args(kind)[0] if get_origin(kind) is Annotated else kind
