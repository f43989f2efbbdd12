"""How one backend's attempt at a request ended, as the router reports it (`Attempt.error`):
skipped (privacy, a reload, the inline time bound spent), ended by the request's own time bound
(inline.max_ms: not a fault of the backend), or failed."""

from __future__ import annotations

from ..errors import NotConfigured, Timeout


class Skipped(NotConfigured):
    """An attempt ruled out right before it connects (the privacy rules, a reload that removed
    the backend, the inline time bound spent: `bound`): reported exactly like a skip decided
    in the plan ("skipped: ...")."""

    def __init__(self, message: str, bound: bool = False) -> None:
        super().__init__(message)
        self.bound = bound

    def __str__(self) -> str:
        return self.message


def by_bound(exc: Exception) -> bool:
    """Whether the request's own inline time bound ended the attempt (not a backend fault)."""
    if isinstance(exc, Timeout):
        return exc.phase == "bound"
    return isinstance(exc, Skipped) and exc.bound


def late(exc: Exception) -> bool:
    """Whether the attempt had the inline bound's time and sent no token in it (not skipped
    for a bound already spent)."""
    return isinstance(exc, Timeout) and exc.phase == "bound"


def describe(exc: Exception, streamed: int) -> str:
    """An attempt's error; a backend that failed mid-answer says how much it had streamed."""
    where = f" after {streamed} chars streamed" if streamed else ""
    return f"{exc}{where}"
