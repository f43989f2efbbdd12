"""Inline work done ahead of the user, in the background, on local models only.

Three kinds of job, at most one per document (a newer one replaces the older):

- **next** (nexts.py): after a suggestion is shown, the suggestion that would follow it if the
  user accepted it (llama.vim's speculative FIM): what the shown line's own generation writes as
  it goes on past that line (types.GoOn), else the document with the suggestion inserted, the
  cursor at its end. It lands in the inline cache, so accept -> next ghost text is a cache hit.
  It is bounded as an automatic request there would be (inline.max_ms from its start,
  max_tokens), and one line at most, so that it is done by the time the user accepts. A
  request that arrives at that very position while the job runs waits for it (within its own
  inline.max_ms) instead of starting a second generation, and goes on from the job's text if
  the job's cap cut its line (started over, it had no time left for a line: empty).
- **warm**: a prefill-only request (`max_tokens == 0`) for the prompt the next inline request
  will most likely use, so that its prefill is a KV-cache hit, once things are quiet (SETTLE_S
  without a didOpen, a didChange or a request): after `didOpen` first the document's top
  window (its first lines that fit the prompt budget, `Request.window = "top"`: the prompt of
  any cursor in them starts like it, so that its prefill is a KV-cache hit wherever the
  cursor is there), then the cursor at its end (where a new or growing file is written; when
  the document fits the budget, both are one prompt); after edits the end of the last edit;
  where the editor says the cursor rests (`mlxd/didMoveCursor`, CURSOR_SETTLE_S), a narrow
  window a time-capped request there takes from the KV cache (models.warm_rungs), then the
  suggestion there is pregenerated (a next job at the cursor itself, nexts.py `_at_rest`).
  Warmed at the end only, a document longer than the budget had a warm-up that no cursor
  above its last window reused: the first request after opening paid a cold prefill.
- **rest** (rest.py): an answer that goes on at its own position after it was answered: the
  rest of a block after its first line was shown, or a line the bound cut before it ended.

Preemption: at most one job runs at a time, in the whole engine (the newest: opening many files
at once warms the last one only), and an interactive request that the cache does not answer
cancels it at once, whatever its document (a job at another position is a wrong guess; a
warm-up is superseded by the real prompt, and the KV cache keeps what it had prefilled). Jobs
also carry `priority = "background"` for the batch engine's own preemption. A change elsewhere
in the document (anything but typing the suggestion itself) drops its job and its pregenerated
item: stale.

Privacy and cost: the runner the engine is given sends a job only where the document's next
real inline request would go, and only when that is a local model. A cloud backend is never
called in the background: it would send code nobody asked to send, and cost money for answers
nobody may read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from mlxd.prompts import CursorContext

from . import why
from .cuts import answer_by
from .jobs import AheadStats, Job, answers_at, blank, cancelling, ended_or_stored, typed_along
from .nexts import NextJobs
from .rest import RestJobs

if TYPE_CHECKING:
    from .engine import Document, InlineEngine

log = logging.getLogger(__name__)

# (request, ctx) -> the answer (as `generate` returns it), or None when nothing was run (no
# local model would serve this document).
Runner = Callable[[Any, CursorContext], Awaitable[Any]]
# Quiet time after the last edit before warming its position (an editor that asks for ghost
# text on every change has asked by then, and then nothing is warmed).
SETTLE_S = 0.75
# A cursor that moved (mlxd/didMoveCursor) and rested this long is where the user will type.
# Longer than a quick click-then-type: a request that comes while the warm-up prefills waits
# for its chunk (~0.25 s here, more under load), and one just after the rest still does (the
# quality bench's 0.5 s pause has more empty answers with the notification than without).
CURSOR_SETTLE_S = 0.6
# What a warm-up prefills, in turn: (Request.window, Request.narrow_to) pairs; ("item", None):
# then the suggestion there (nexts.py `_at_rest`).
Windows = tuple[tuple[str, int | None], ...]
AT_EDIT: Windows = (("cursor", None),)
AT_OPEN: Windows = (("top", None), ("cursor", None))
# Where the cursor rests: a window a time-capped request there takes from the KV cache
# (models.warm_rungs; at most 256 tokens, what prefills within one inline.max_ms:
# models.warm_rung), then the suggestion itself.
AT_REST: Windows = (("cursor", 256), ("item", None))


class Ahead(RestJobs, NextJobs):
    """The background jobs of one InlineEngine (see the module docstring)."""

    def __init__(self, engine: InlineEngine, run: Runner | None) -> None:
        self.engine = engine
        self.run = run
        self.stats = AheadStats()
        self._jobs: dict[str, Job] = {}
        self._items: dict[str, Job] = {}  # uri -> the next job whose item is in the cache
        self._settle: dict[str, asyncio.TimerHandle] = {}

    @property
    def enabled(self) -> bool:
        return self.run is not None and self.engine.cfg.background

    def snapshot(self) -> dict[str, int]:
        """The counters, and `ahead_active`: background jobs in flight now (0 or 1)."""
        return {**asdict(self.stats), "ahead_active": len(self._jobs)}

    # --- the engine's request path ------------------------------------------------------------
    def asked(self, uri: str) -> None:
        """A request came: the user is active; no warm-up is started until things are quiet
        again (a warm-up's prefill would delay the next request until it can be preempted)."""
        for pending in list(self._settle):
            self._cancel_settle(pending)

    async def join(
        self,
        uri: str,
        prefix: str,
        suffix: str,
        arrived: float | None = None,
        joined: int = 0,
        whole: bool = True,
    ) -> str | None:
        """Before a cache miss goes to the model: when this document's next job answers this
        very position, wait for it, until `inline.max_ms` after the request `arrived`
        (monotonic; None: from now): its item, or what follows from its cut text (`_resume`;
        None: nothing, ask the model), or "" when it is not done in time (the job goes on into
        the cache for the next request). Otherwise cancel the background job (None).
        `joined`: jobs this request waited for already (counted once). `whole`: at a block
        start, wait for the block within the bound (rest.py `_join_rest`); an invoked request
        does not (its alternatives take the bound)."""
        job = self._jobs.get(uri)
        start = time.monotonic() if arrived is None else arrived
        if job is not None and job.task is not None and not job.task.done():
            if job.kind == "next" and job.key == (prefix, suffix):
                self.stats.ahead_joined += not joined
                budget = answer_by(self.engine.cfg.max_ms)
                bound = start + budget - time.monotonic()
                if job.go is not None:  # the answer's generation going on: no cut before then
                    job.go.extend(start + budget)
                # Shielded: a timeout or a client cancel leaves the job running for the next.
                try:
                    await asyncio.wait_for(ended_or_stored(job), max(0.0, bound))
                except TimeoutError:
                    self.stats.ahead_late += 1
                    why.note("the work ahead for this position was not done by inline.max_ms")
                    return ""
                except asyncio.CancelledError:
                    if cancelling():  # the request itself was cancelled
                        raise
                    return None  # the job was stopped under it (didClose, a request elsewhere)
                except Exception:
                    pass
                item = self.engine.cache.peek(uri, prefix, suffix)
                if not item and job.cut is not None and time.monotonic() < start + budget:
                    going = self._jobs.get(uri)  # the cut line going on already (nexts.py)
                    if going is not None and going.task and answers_at(going, prefix, suffix):
                        return await self._join_rest(going, prefix, suffix, start, whole)
                    return await self._resume(uri, job, start)
                return item
            if answers_at(job, prefix, suffix):  # an answer going on here (rest.py)
                self.stats.ahead_joined += not joined
                item = await self._join_rest(job, prefix, suffix, start, whole)
                if item is None and self._jobs.get(uri) not in (None, job) and joined < 2:
                    # Its block ended there, and a next job started at this very position
                    # (rest.py then_next): wait for that, not a second generation beside it.
                    return await self.join(uri, prefix, suffix, start, joined + 1, whole)
                return item
        self._stop_all(cancelled=True)
        return None

    def hit(self, uri: str, prefix: str, suffix: str) -> bool:
        """Whether a cache hit at this position is a pregenerated item (counted)."""
        item = self._items.get(uri)
        if item is None or item.key != (prefix, suffix):
            return False
        self.stats.ahead_hits += 1
        return True

    # --- documents ------------------------------------------------------------------------
    def opened(
        self, uri: str, language: str, text: str, neighbors: Iterable[Document] = ()
    ) -> None:
        """didOpen: warm the document's top window, then the prompt at its end, once SETTLE_S
        passed quietly."""
        if self.enabled and self.engine.enabled_for(language) and not blank(text):
            docs = list(neighbors)
            self._quiet(uri, language, text, lambda: len(text), lambda: docs, AT_OPEN)

    def changed(
        self,
        uri: str,
        language: str,
        text: str,
        edit_end: Callable[[], int] | None,
        neighbors: Callable[[], Iterable[Document]] = tuple,
    ) -> None:
        """didChange (`text` is the new document, `edit_end` finds the offset after the last
        change, None when unknown): drop what the change made stale, warm the edit's end once
        quiet (only then is `edit_end` called: finding it in a huge document takes a while)."""
        # A warm-up goes on: its prompt up to the edit is still the document's.
        job = self._jobs.get(uri)
        if job is not None and job.kind == "warm":
            job.stale = True  # the prompt it prefills goes on; one after it would not be
        elif job is not None and not typed_along(job, text):
            self._stop(uri, stale=True)
        item = self._items.get(uri)
        if item is not None and not typed_along(item, text):
            del self._items[uri]
            self.engine.cache.discard(uri, *item.key)
            self.stats.ahead_dropped += 1
        self._cancel_settle(uri)
        if edit_end is None or not self.enabled or not self.engine.enabled_for(language):
            return
        self._quiet(uri, language, text, edit_end, neighbors, AT_EDIT)

    def moved(
        self,
        uri: str,
        language: str,
        text: str,
        offset: Callable[[], int],
        neighbors: Callable[[], Iterable[Document]],
    ) -> None:
        """mlxd/didMoveCursor (`offset()` finds the cursor in `text`): once the cursor rests
        CURSOR_SETTLE_S, prefill a narrow window there (AT_REST: one a time-capped request
        takes from the KV cache), then pregenerate the suggestion there into the cache. Work
        ahead after a suggestion (where the user types) is kept."""
        self.stats.cursor_moves += 1
        if self.enabled and self.engine.enabled_for(language):
            self._quiet(uri, language, text, offset, neighbors, AT_REST, CURSOR_SETTLE_S)

    def _quiet(
        self,
        uri: str,
        language: str,
        text: str,
        offset: Callable[[], int],
        neighbors: Callable[[], Iterable[Document]],
        windows: Windows,
        delay: float | None = None,
    ) -> None:
        """Warm `windows` at `offset()` after `delay` seconds (None: SETTLE_S, read at the
        call) without a document event or a request. Only the newest document waits: a burst
        of didOpens (a session restored) warms the last one."""
        for pending in list(self._settle):
            self._cancel_settle(pending)
        wait = SETTLE_S if delay is None else delay
        self._settle[uri] = asyncio.get_running_loop().call_later(
            wait, self._settled, uri, language, text, offset, neighbors, windows
        )

    def forget(self, uri: str) -> None:
        """didClose: stop the document's job and forget its item."""
        self._cancel_settle(uri)
        self._stop(uri)
        self._items.pop(uri, None)

    def close(self) -> None:
        """The daemon is exiting, or the settings changed (what is planned or made under the
        old ones is not what the new ones would make): stop every job and timer."""
        for uri in set(self._jobs) | set(self._settle):
            self.forget(uri)

    def forget_items(self) -> None:
        """The inline cache was cleared: no pregenerated item is in it any more, and no job
        going on has stored one (a request joins it and waits for what it stores next)."""
        self._items.clear()
        for job in self._jobs.values():
            job.stored.clear()

    # --- internals ------------------------------------------------------------------------
    def _settled(
        self,
        uri: str,
        language: str,
        text: str,
        edit_end: Callable[[], int],
        neighbors: Callable[[], Iterable[Document]],
        windows: Windows,
    ) -> None:
        self._settle.pop(uri, None)
        if not (self.enabled and self.engine.enabled_for(language)):
            return  # turned off since the event (a settings reload)
        job = self._jobs.get(uri)
        if job is None or job.kind == "warm" or job.resting:  # else work ahead holds the place
            self._warm(uri, language, text, edit_end(), list(neighbors()), windows)

    def _warm(
        self,
        uri: str,
        language: str,
        text: str,
        offset: int,
        neighbors: list[Document],
        windows: Windows,
    ) -> None:
        ctx = self.engine.context_for(text, offset, uri, language)
        self._stop_all()
        job = Job("warm")
        job.task = asyncio.ensure_future(self._prefill(job, ctx, neighbors, windows))
        self._jobs[uri] = job
        job.task.add_done_callback(lambda _: self._done(uri, job))

    async def _prefill(
        self, job: Job, ctx: CursorContext, neighbors: list[Document], windows: Windows
    ) -> None:
        """Prefill the prompt at `ctx` for each of `windows` in turn (Request.window and
        narrow_to), until the document changes or a request stops the job."""
        assert self.run is not None
        ctx.header = self.engine._header(ctx, neighbors)  # as the real request's, for KV reuse
        request = replace(self.engine._request(ctx), max_tokens=0, max_time_s=None)
        for window, narrow_to in windows:
            if job.stale:
                return
            if window == "item":
                await self._at_rest(job, ctx, neighbors)
                return
            warm = replace(request, priority="background", window=window, narrow_to=narrow_to)
            try:
                if await self.run(warm, ctx) is None:
                    return
            except Exception as exc:  # background work fails quietly
                log.debug("warm-up for %s failed: %s", ctx.uri, exc)
                return
            self.stats.warmups += 1

    def _done(self, uri: str, job: Job) -> None:
        if self._jobs.get(uri) is job:
            del self._jobs[uri]

    def _stop(self, uri: str, *, cancelled: bool = False, stale: bool = False) -> None:
        job = self._jobs.pop(uri, None)
        if job is None or job.task is None or job.task.done():
            return
        job.task.cancel()
        job.stale = job.stale or stale  # a request waiting for it has nothing to show (rest.py)
        if job.kind != "warm":  # next and rest jobs (text made for the user); not a warm-up
            self.stats.ahead_cancelled += cancelled
            self.stats.ahead_dropped += stale

    def _stop_all(self, *, cancelled: bool = False) -> None:
        for uri in list(self._jobs):
            self._stop(uri, cancelled=cancelled)

    def _cancel_settle(self, uri: str) -> None:
        handle = self._settle.pop(uri, None)
        if handle is not None:
            handle.cancel()
