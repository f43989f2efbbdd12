"""Which work the batch engine runs first (issue #19): inline > streams > background.

Three ranks. An inline request (latency-bound: `inline.max_ms`) outranks a streaming chat or
`mlxd/complete` until its own deadline; a stream outranks background work (work ahead, warm-ups,
issue #17 item 6). Work of a lower rank than the highest there is waits outside mlx-lm's batch,
its KV cache kept (models/background.py), and resumes where it stopped, losing and repeating
nothing. An inline request counts from the moment the local backend starts building its prompt
(`BatchEngine.expect`), so that tokenizing it does not compete with a chat's decoding for the
cores. Background work waits as long as anything else is there. A stream's wait is bounded:

- a pause lasts at most until the deadline of the inline requests that started it (the
  latest of them, so no longer than their `inline.max_ms`), and an inline request outranks
  streams for INLINE_RANK_S at most: `inline.max_ms` is a window's own setting, and a window
  that allows itself 10 minutes may wait that long, but never holds another window's chat
  for it; inline requests that arrive during the pause do not extend it;
- after a pause the stream runs at least as long as that pause lasted before another can
  start (it decodes alongside inline work meanwhile), so a steady flow of inline requests
  takes at most half of a stream's time, never all of it.

Pure functions of a job and the time (`now`, monotonic seconds): no model, no thread.
"""

from __future__ import annotations

from typing import Any

BACKGROUND, STREAM, INLINE = 0, 1, 2
# The longest an inline request outranks streams, from when its job (or mark) was made: the
# default inline.max_ms (1.5 s) and room for a slow machine.
INLINE_RANK_S = 3.0


def _inline_until(job: Any) -> float:
    return min(job.deadline, job.made + INLINE_RANK_S)


def rank(job: Any, now: float) -> int:
    """The job's rank now: an inline job past its deadline or INLINE_RANK_S after it was made
    (or without a deadline) is a stream."""
    if job.background:
        return BACKGROUND
    if job.inline and job.deadline is not None and now < _inline_until(job):
        return INLINE
    return STREAM


def top_rank(jobs: list[Any], now: float) -> int:
    """The highest rank among the live (not cancelled) jobs; -1 when there are none."""
    ranks = [rank(job, now) for job in jobs if not job.cancelled.is_set()]
    return max(ranks, default=-1)


def must_wait(job: Any, top: int, now: float) -> bool:
    """Whether a job that runs (or is about to) waits for higher-ranked work: a stream not
    while it makes up for its last pause."""
    if rank(job, now) >= top:
        return False
    return job.background or now >= job.protected_until


def may_resume(job: Any, top: int, now: float) -> bool:
    """Whether a waiting job runs again: it is of the top rank, or its pause is over."""
    if rank(job, now) >= top:
        return True
    return not job.background and job.pause_ends is not None and now >= job.pause_ends


def pause_end(jobs: list[Any], now: float) -> float:
    """When a stream paused now for `jobs` (those of the inline rank) runs again at the
    latest: the last of their deadlines (each capped at INLINE_RANK_S after it was made)."""
    return max(_inline_until(job) for job in jobs if rank(job, now) == INLINE)


def pause(job: Any, ends: float, now: float) -> None:
    """A stream set aside until `ends` at the latest."""
    job.paused_at, job.pause_ends = now, ends
    job.pauses += 1


def resume(job: Any, now: float) -> None:
    """A stream runs again: it is not paused again until it has run as long as it waited."""
    if job.paused_at is None:
        return
    waited = max(0.0, now - job.paused_at)
    job.held_s += waited
    job.protected_until = now + waited
    job.paused_at = job.pause_ends = None
