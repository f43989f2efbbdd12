"""How the router waits: the backoff between retries, an attempt's deadlines (and theirs on the
event loop's clock), and the error when one runs out."""

from __future__ import annotations

import asyncio
import random
import time

from ..errors import Timeout

# A stream read from a full buffer never suspends: every this many events the router lets the
# event loop run (other requests, the client's cancels) before it takes the next.
YIELD_EVERY = 32


def share_of_bound(after: int) -> float:
    """The share of what is left of inline.max_ms a backend late for inline requests
    (breakers.Breakers.late) gets for its first usable answer with `after` (>= 1) backends
    still to try after it: an equal one (half before one, a third before two: inline
    _first_token_s = max_ms, the defaults, left a hung cloud's fallback no time)."""
    return 1.0 / (after + 1)


def first_token_by(
    limit_s: float, end: float, bound: float | None, last: bool, share: float | None
) -> float:
    """The time.monotonic() instant an attempt's first token must come by: its first-token
    limit (`limit_s` from now), the request's budget (`end`) for the last backend left; never
    past the inline bound, and with `share` (a backend late for inline requests, others after
    it: share_of_bound) at most that share of what is left of the bound."""
    now = time.monotonic()
    first_by = end if last else now + limit_s
    if bound is None:
        return first_by
    if share is not None:
        first_by = min(first_by, now + (bound - now) * share)
    return min(first_by, bound)


def loop_time(monotonic: float) -> float:
    """A time.monotonic() instant on the event loop's clock (the same clock on CPython, but
    the loop does not promise it)."""
    return asyncio.get_running_loop().time() + (monotonic - time.monotonic())


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s ... scaled by U(0.5, 1)."""
    return 0.25 * (2**attempt) * random.uniform(0.5, 1.0)


def ran_out(
    deadline: float,
    bound: float | None,
    bound_s: float | None,
    total_s: float | None,
    first_token_s: float,
    share: bool,
) -> Timeout:
    """The error for an attempt with no token by `deadline`: the inline bound's (`bound_s`
    long) when that was the deadline, or the share of it a late backend had (`share`: no
    usable answer by then), else `timeout`'s."""
    if share:
        ms = first_token_s * 1000
        return Timeout(f"no answer within its share of inline.max_ms ({ms:.0f} ms)", "bound")
    if bound is not None and deadline >= bound:
        return Timeout(f"no token within inline.max_ms ({bound_s * 1000:.0f} ms)", "bound")
    return timeout(total_s, first_token_s)


def timeout(budget_s: float | None, first_token_s: float) -> Timeout:
    """The error for a wait that ran out: the request's whole budget (`budget_s`), or None:
    the backend's first-token limit."""
    if budget_s is not None:
        return Timeout(f"request time budget ({budget_s:g}s) spent", "total")
    # under a second in ms: a 0.05 s limit read "0.0s" (first_by less a few us)
    limit = f"{first_token_s:.1f}s" if first_token_s >= 0.95 else f"{first_token_s * 1000:.0f} ms"
    return Timeout(f"no token within {limit}", "first_token")
