"""How the router waits: the backoff between retries, deadlines on the event loop's clock, and
the error when one runs out."""

from __future__ import annotations

import asyncio
import random
import time

from ..errors import Timeout


def loop_time(monotonic: float) -> float:
    """A time.monotonic() instant on the event loop's clock (the same clock on CPython, but
    the loop does not promise it)."""
    return asyncio.get_running_loop().time() + (monotonic - time.monotonic())


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s ... scaled by U(0.5, 1)."""
    return 0.25 * (2**attempt) * random.uniform(0.5, 1.0)


def timeout(budget_s: float | None, first_token_s: float) -> Timeout:
    """The error for a wait that ran out: the request's whole budget (`budget_s`), or None:
    the backend's first-token limit."""
    if budget_s is not None:
        return Timeout(f"request time budget ({budget_s:g}s) spent", "total")
    return Timeout(f"no token within {first_token_s:.1f}s", "first_token")
