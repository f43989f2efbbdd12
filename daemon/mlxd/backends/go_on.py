"""A local generation that goes on after its answer ended (types.GoOn, issue #17).

The answer of an inline request ends where the router stops reading (enough lines, a stop
string); its generation has the prompt and the answer in its KV cache and is one decode step
from the next token. Instead of being stopped there, and the suggestion after it generated
anew by a second job (a gap, a prompt-cache match, a first step), it goes on: the same job,
at background priority from that moment (any interactive request preempts it within one
decode step, models/ranks.py), until its GoOn has enough lines, its bound or its tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..models import Job, StopPolicy
from ..types import Delta, Done, GoOn

log = logging.getLogger("mlxd.backends.local")


def went_on_with(job: Job, go: GoOn, queue: asyncio.Queue[Any]) -> bool:
    """Called where the answer's stream is closed before its job ended: let the job go on into
    `go` (True), unless the caller is being cancelled (nobody reads it), the job ended or its
    deadline passed (a cut answer: inline/rest.py goes on from it), or nobody wants it."""
    task = asyncio.current_task()
    now = time.monotonic()
    if go.stopped or job.ended.is_set() or job.cancelled.is_set():
        return False
    if (task is not None and task.cancelling()) or (job.deadline or now + 1) <= now:
        return False
    # From now on it is background work, bounded as a request of its own would be.
    job.background, job.inline = True, False
    job.deadline = now + go.bound_s
    job.max_tokens = max(job.max_tokens, job.generated + go.max_tokens)  # alone: read each step
    drain = asyncio.ensure_future(_drain(job, go, queue, job.generated, now))
    go.take(lambda: (job.cancelled.set(), drain.cancel()), lambda until: _extend(job, until))
    return True


def _extend(job: Job, until: float) -> None:
    job.deadline = max(job.deadline or until, until)  # read by the engine before each step


async def _drain(job: Job, go: GoOn, queue: asyncio.Queue[Any], made: int, since: float) -> None:
    """Read the job's stream into `go` until it has `go.lines` finished lines (then stop the
    job: its KV cache, the next line's included, stays in the prompt cache) or it ends."""
    finish: str | None = "length"
    policy = StopPolicy(max_lines=go.lines)
    try:
        while not policy.enough_lines(go.text):
            item = await queue.get()
            if isinstance(item, Done):
                finish = item.finish_reason
                break
            if isinstance(item, BaseException):
                break
            if isinstance(item, Delta):
                go.text += item.text
        else:
            finish = "stop"
    except asyncio.CancelledError:
        finish = None  # stopped: nobody reads it
    finally:
        job.cancelled.set()
        go.tokens = job.generated - made
        go.end(finish)
        log.debug(
            "inline job went on in the background: %d tokens in %.0f ms (%s)",
            go.tokens,
            (time.monotonic() - since) * 1000,
            finish or "stopped",
        )
