"""How the router waits: the backoff between retries, and deadlines on the event loop's clock."""

from __future__ import annotations

import asyncio
import random
import time


def loop_time(monotonic: float) -> float:
    """A time.monotonic() instant on the event loop's clock (the same clock on CPython, but
    the loop does not promise it)."""
    return asyncio.get_running_loop().time() + (monotonic - time.monotonic())


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s ... scaled by U(0.5, 1)."""
    return 0.25 * (2**attempt) * random.uniform(0.5, 1.0)
