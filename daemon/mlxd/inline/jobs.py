"""The work-ahead jobs' state (inline/ahead.py) and the rules on a document they share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlxd.prompts import CursorContext

if TYPE_CHECKING:
    from .ahead import Runner
    from .engine import InlineEngine


@dataclass(slots=True)
class AheadStats:
    ahead_started: int = 0  # next-suggestion jobs started
    ahead_stored: int = 0  # ... that put an item in the cache
    # next items and block lines written by the shown line's own generation going on
    # (types.GoOn), with no job of their own
    ahead_continued: int = 0
    ahead_hits: int = 0  # requests answered by a pregenerated item (cache or joined)
    ahead_joined: int = 0  # requests that waited for the job in flight at their position
    ahead_late: int = 0  # ... of them, answered empty: not done within inline.max_ms
    ahead_resumed: int = 0  # ... of them, that went on from the job's cut text
    ahead_cancelled: int = 0  # next jobs preempted by an interactive request
    ahead_dropped: int = 0  # jobs or items dropped because the document changed elsewhere
    warmups: int = 0  # prefill-only requests a local model ran to the end
    cursor_moves: int = 0  # mlxd/didMoveCursor notifications taken (warmed once it rests)
    cursor_items: int = 0  # suggestions pregenerated where the cursor rests, cached
    rest_started: int = 0  # answers that went on in the background (inline/rest.py)
    rest_stored: int = 0  # ... that put more in the cache at their position


@dataclass(eq=False, slots=True)
class Job:
    """One background job. next: the suggestion after a shown one; rest: an answer going on
    at its own position (rest.py); warm: a prefill."""

    kind: Literal["next", "warm", "rest"]
    task: asyncio.Future[Any] | None = None
    # next / rest: the document it assumes is base + suggestion[:k] + suffix; it answers at
    # `key` (rest: also where the user typed along its text).
    base: str = ""
    suggestion: str = ""
    suffix: str = ""
    key: tuple[str, str] = ("", "")  # (prefix, suffix) of the position it answers
    ctx: CursorContext | None = None  # next: the context it ran with (its header: the KV's)
    cut: Any = None  # next: its answer, when its time cap cut it (finish "length")
    timed_out: bool = False  # next: no answer by its time cap (not even a first token)
    stored_item: bool = False  # next: it put an item in the cache
    go: Any = None  # next: the shown answer's generation going on that writes it (types.GoOn)
    # rest: set each time it stores a suggestion at `key` (a request waiting for it goes on).
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    # warm: the document changed since it began (its prompts still to come are not started);
    # next, rest: dropped by an edit that does not type along it.
    stale: bool = False
    # next: pregenerated where the cursor rests (mlxd/didMoveCursor), not after a suggestion;
    # rest: going on from such a one. A move elsewhere replaces it.
    resting: bool = False
    # rest: its block ended with its first line, and its generation wrote nothing usable
    # after it: a next job follows it, after that line (rest.py).
    then_next: bool = False


@dataclass(frozen=True, slots=True)
class Continued:
    """What a shown answer's generation wrote after it (types.GoOn), as a next job's answer."""

    text: str
    finish_reason: str
    completion_tokens: int


def blank(text: str) -> bool:
    """`not text.strip()` without copying the text (a 50 MB didOpen)."""
    return not text or text.isspace()


def typed_along(job: Job, text: str) -> bool:
    """Whether `text` is the job's document with a part of its suggestion typed (or accepted):
    base + suggestion[:k] + suffix."""
    base, suffix = job.base, job.suffix
    middle = len(text) - len(base) - len(suffix)
    return (
        0 <= middle <= len(job.suggestion)
        and text.startswith(base)
        and text.endswith(suffix)
        and job.suggestion.startswith(text[len(base) : len(base) + middle])
    )


def answers_at(job: Job, prefix: str, suffix: str) -> bool:
    """Whether a rest job answers the position (prefix, suffix): its own, or one where the
    user typed along its text."""
    return (
        job.kind == "rest"
        and suffix == job.suffix
        and prefix.startswith(job.base)
        and job.suggestion.startswith(prefix[len(job.base) :])
    )


def cancelling() -> bool:
    """Whether the calling task itself is being cancelled (its client's $/cancelRequest, a
    newer request), not only a task it awaits (a job stopped under it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AheadPart:
    """What the parts of inline/ahead.py's Ahead (rest.py's RestJobs, nexts.py's NextJobs,
    mixed into it) use of it: Ahead owns this state and defines these methods."""

    engine: InlineEngine
    run: Runner | None
    stats: AheadStats
    _jobs: dict[str, Job]
    _items: dict[str, Job]
    enabled: bool

    def _stop_all(self, *, cancelled: bool = False) -> None: ...
    def after(self, ctx: CursorContext, suggestion: str) -> None: ...
    def go_on(self, ctx: CursorContext, answer: Any, shown: str | None, block: bool) -> bool: ...
    def _done(self, uri: str, job: Job) -> None: ...


async def ended_or_stored(job: Job) -> None:
    """Until `job` ends (its error, or CancelledError when it was stopped, raised here) or
    stores an answer before it ends (a reranking resting job's greedy one, rerank.py). The job
    itself is never cancelled from here: a timeout leaves it running for the next request."""
    assert job.task is not None
    stored = asyncio.ensure_future(job.stored.wait())
    try:
        done, _ = await asyncio.wait({job.task, stored}, return_when="FIRST_COMPLETED")
    finally:
        stored.cancel()
    if job.task in done:
        job.task.result()
