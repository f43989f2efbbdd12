"""The batch engine's ranks (models/ranks.py, issue #19): inline requests before streams before
background work, and the bounds on a stream's pauses. Pure functions of a job and a given time:
no model, no clock."""

from __future__ import annotations

from mlxd.models.job import Job
from mlxd.models.ranks import (
    BACKGROUND,
    INLINE,
    INLINE_RANK_S,
    STREAM,
    may_resume,
    must_wait,
    pause,
    pause_end,
    rank,
    resume,
    top_rank,
)


def job(**kw: object) -> Job:
    return Job(tokens=[1, 2, 3], max_tokens=8, temperature=0.0, stop=[], emit=print, **kw)  # type: ignore[arg-type]


def test_inline_outranks_a_stream_until_its_deadline_and_a_stream_outranks_background() -> None:
    inline, chat, warm = job(inline=True, deadline=10.0), job(), job(background=True)
    assert [rank(j, 0.0) for j in (inline, chat, warm)] == [INLINE, STREAM, BACKGROUND]
    assert rank(inline, 10.0) == STREAM  # its bound spent: it takes its turn like a chat
    assert rank(job(inline=True), 0.0) == STREAM  # no bound: no precedence
    # Work ahead is inline work at the background rank.
    assert rank(job(inline=True, background=True, deadline=10.0), 0.0) == BACKGROUND


def test_the_top_rank_ignores_cancelled_jobs() -> None:
    inline, chat = job(inline=True, deadline=10.0), job()
    assert top_rank([inline, chat], 0.0) == INLINE
    inline.cancelled.set()
    assert top_rank([inline, chat], 0.0) == STREAM
    assert top_rank([], 0.0) == -1


def test_a_stream_waits_for_inline_work_and_background_for_anything() -> None:
    chat, warm = job(), job(background=True)
    assert must_wait(chat, INLINE, 0.0) and must_wait(warm, STREAM, 0.0)
    assert not must_wait(chat, STREAM, 0.0) and not must_wait(warm, BACKGROUND, 0.0)


def test_a_long_inline_budget_outranks_streams_for_inline_rank_s_only() -> None:
    # inline.max_ms is each window's own: one that allows itself 10 minutes held another
    # window's chat for all of them (attack6). Its precedence ends INLINE_RANK_S after it
    # was made; then it is batched with the chat like any stream.
    long, chat = job(inline=True, deadline=600.0, made=0.0), job()
    assert rank(long, INLINE_RANK_S - 0.01) == INLINE
    assert rank(long, INLINE_RANK_S) == STREAM
    assert pause_end([long, chat], 0.0) == INLINE_RANK_S
    short = job(inline=True, deadline=1.5, made=0.0)  # the default max_ms: its own deadline
    assert pause_end([short], 0.0) == 1.5


def test_a_pause_ends_at_the_last_deadline_of_the_inline_work_that_started_it() -> None:
    first, second = job(inline=True, deadline=1.5), job(inline=True, deadline=2.0)
    late, chat = job(inline=True, deadline=1.0), job()
    assert pause_end([first, second, chat, job(inline=True, deadline=0.5)], 1.0) == 2.0
    pause(chat, pause_end([first, late], 0.0), 0.0)
    assert (chat.paused_at, chat.pause_ends, chat.pauses) == (0.0, 1.5, 1)
    # Inline work that arrives during the pause does not make it longer.
    newcomer = job(inline=True, deadline=9.0)
    assert not may_resume(chat, top_rank([newcomer, chat], 1.4), 1.4)
    assert may_resume(chat, top_rank([newcomer, chat], 1.5), 1.5)


def test_after_a_pause_a_stream_runs_as_long_as_it_waited_before_the_next() -> None:
    """A steady flow of inline requests takes at most half of a stream's time."""
    chat = job()
    pause(chat, 1.5, 0.0)
    resume(chat, 1.5)
    assert (chat.held_s, chat.paused_at, chat.pause_ends) == (1.5, None, None)
    assert not must_wait(chat, INLINE, 2.9)  # decodes alongside the inline work meanwhile
    assert must_wait(chat, INLINE, 3.0)
    pause(chat, 4.0, 3.0)
    resume(chat, 3.5)  # the inline work ended first: a shorter pause, a shorter protection
    assert chat.held_s == 2.0 and chat.pauses == 2
    assert not must_wait(chat, INLINE, 3.9) and must_wait(chat, INLINE, 4.0)


def test_background_work_is_never_released_by_time() -> None:
    warm = job(background=True)
    assert not may_resume(warm, STREAM, 1e9)
    assert may_resume(warm, BACKGROUND, 0.0)


def test_the_time_held_counts_the_pause_under_way() -> None:
    chat = job()
    assert chat.held(5.0) == 0.0
    pause(chat, 9.0, 1.0)
    assert chat.held(3.0) == 2.0
    resume(chat, 4.0)
    assert chat.held(8.0) == 3.0
