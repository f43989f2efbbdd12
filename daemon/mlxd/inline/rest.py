"""An inline answer that goes on in the background at its own position (issue #16 item 2).

- **At a block start** the request asks for the first line only (well within inline.max_ms
  on a slow machine where the whole block is not); the same generation then goes on from its
  text, which the KV cache holds (`assistant_prefix`), as background work, into the inline
  cache at that position, and the request shows the block as far as it is stored by its bound
  (`block_by`: all of it when the model ends it in time). What comes later is in the cache:
  asking again shows the block, typing through the shown lines (or accepting) shows the rest.
- **When the bound hits first** (no line finished: a cut line, or not even a first token), the
  generation goes on the same way, its first line first: the next request at that place (asking
  again, or typing along the model's text) waits for it, within its own bound, and is answered
  as soon as a line is there.

These are the work-ahead jobs of inline/ahead.py (kind "rest"): one at a time, local models
only (the runner refuses anything else), `priority = "background"` in the batch engine,
cancelled by a request elsewhere and dropped by an edit that does not type along them. Only
whole lines are ever stored (cuts.cleaned): never a fragment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from mlxd.models import StopPolicy
from mlxd.prompts import CursorContext
from mlxd.types import GoOn

from . import why
from .cuts import answer_by, text_and_finish
from .jobs import AheadPart, Continued, Job, blank, cancelling

log = logging.getLogger(__name__)


class RestJobs(AheadPart):
    """The rest jobs of inline/ahead.py's Ahead (mixed into it; AheadPart: what they use of it)."""

    def go_on(
        self,
        ctx: CursorContext,
        answer: Any,
        shown: str | None,
        block: bool,
        go: GoOn | None = None,
        resting: bool = False,
    ) -> bool:
        """After a fresh answer at `ctx` (None: none came; `shown`: what of it is shown, None
        or "" for nothing; `block`: it asked for a block's first line only): let the generation
        go on in the background when there is more to say there. `go`: the generation itself
        going on past the block's first line (types.GoOn); whether the rest job took it.
        `resting`: it goes on from the suggestion made where the cursor rests (nexts.py); that,
        or nothing shown, and a move elsewhere replaces it as it would that suggestion's job."""
        if not self.enabled or (answer is not None and not self.engine.served_locally(answer)):
            return False
        text, finish = ("", "length") if answer is None else text_and_finish(answer)
        if shown:
            if not block:
                return False  # a whole answer: the next suggestion is ahead.after's
            phases: list[int | None] = [ctx.max_lines]  # the block, after its first line
        elif finish == "length":  # cut by the bound (or max_tokens) before a line ended
            phases = [1] if ctx.max_lines == 1 else [1, ctx.max_lines]
        else:
            return False  # the model said nothing worth showing
        used = getattr(answer, "completion_tokens", 0) or 0
        if used >= self.engine.cfg.max_tokens:
            return False
        go = go if shown and go is not None and go.started else None
        self._stop_all()
        job = Job("rest", base=ctx.prefix, suggestion=shown or text, suffix=ctx.suffix, ctx=ctx)
        # Nothing shown: the user is not typing along it, and a move elsewhere replaces it like
        # resting work (it held the place, and the new rest was never warmed; attack11).
        job.key, job.go, job.resting = (ctx.prefix, ctx.suffix), go, resting or not shown
        job.task = asyncio.ensure_future(self._rest(job, ctx, text, used, phases, go))
        self._jobs[ctx.uri] = job
        self.stats.rest_started += 1
        return go is not None

    async def block_by(
        self, ctx: CursorContext, shown: str, deadline: float
    ) -> tuple[str | None, bool]:
        """At a block start whose first line `shown` was just answered: the block as far as
        its rest job has stored whole lines by `deadline` (monotonic; the request's own
        bound), or by the job's end when sooner. The request shows the whole block when it
        is written in time, instead of its first line with the rest only in the cache; a job
        not done by then goes on for the next request there. `shown` when no rest job runs
        at ctx's position; None when an edit dropped the job meanwhile (the text is no longer
        the document's). And whether the job was left to itself: False when it was stopped
        meanwhile (newer work elsewhere, didClose, a reload, an edit), which no work after this
        answer may then replace."""
        job = self._jobs.get(ctx.uri)
        if job is None or job.kind != "rest" or job.key != (ctx.prefix, ctx.suffix):
            return shown, True
        assert job.task is not None
        if job.go is not None:  # the generation going on: no cut before the request's bound
            job.go.extend(deadline)
        try:  # shielded: a timeout or a client cancel leaves the job running for the next
            await asyncio.wait_for(asyncio.shield(job.task), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if cancelling():  # the request itself was cancelled
                raise
        stored = self.engine.cache.peek(ctx.uri, ctx.prefix, ctx.suffix) or shown
        return (None if job.stale else stored), not job.task.cancelled()

    async def _went_on(self, job: Job, ctx: CursorContext, text: str, go: GoOn) -> Continued:
        """The block's second line from its first line's generation going on (`go`), stored at
        ctx as soon as it is there (a request after the first line was accepted waits for it):
        the text so far, its tokens after `text`, and "stop" when the model ended the block
        there; (text, "length", 0) when it wrote nothing usable."""
        try:
            await go.wait()
        finally:
            go.stop()  # cancelled: no more of it
        if go.finish_reason is None or not go.text.startswith(text):
            return Continued(text, "length", 0)
        if blank(go.text[len(text) :]):  # nothing after the first line but a line break
            # "stop": the model ended the block with that line (then the line after the block
            # is next); else asked again, it may say more.
            job.then_next = go.finish_reason == "stop"
            return Continued(text, go.finish_reason if job.then_next else "length", 0)
        # Whole lines only, unless the model itself ended there (fewer lines than asked for).
        lines = StopPolicy(max_lines=go.lines)
        ended = go.finish_reason == "stop" and not lines.enough_lines(go.text)
        more = Continued(go.text, "stop" if ended else "length", go.tokens)
        shown, kept = job.suggestion, self.engine.keep_answer(ctx, more)
        if kept == shown:  # the block ended with its first line: what follows is the next one
            job.then_next = not self._next_after_block(ctx, shown, more)
            more = replace(more, finish_reason="stop")  # no more of the block
        self.stats.ahead_continued += bool(kept) and kept != shown
        job.suggestion = kept or job.suggestion
        job.stored.set()
        return more

    def _next_after_block(self, ctx: CursorContext, shown: str, went: Continued) -> bool:
        """A block that is its first line only (`shown`): the line its generation wrote after
        it is the next suggestion, stored at the position after `shown` (as ahead.after's
        next job would), where the request after the accept looks. Whether an answer ("" for
        none to show) is stored there: not when the model wrote only a blank line (it stopped
        at the block's end), or a line a cap cut."""
        if not went.text.startswith(shown):
            return False
        text = ctx.prefix + shown + ctx.suffix
        nxt = self.engine.context_for(text, len(ctx.prefix) + len(shown), ctx.uri, ctx.language)
        nxt.max_lines = 1
        rest = went.text[len(shown) :]
        if not rest.strip():
            return False
        if self.engine.keep_answer(nxt, replace(went, text=rest)):
            self.stats.ahead_continued += 1
        return self.engine.cache.peek(nxt.uri, nxt.prefix, nxt.suffix) is not None

    async def _rest(
        self,
        job: Job,
        ctx: CursorContext,
        text: str,
        used: int,
        phases: list[int | None],
        go: GoOn | None = None,
    ) -> None:
        """Go on from `text` (`used` tokens), first through `go` (the generation itself going
        on, when it did), then one request per phase (1: up to the end of the first line;
        None: the block), each stored at ctx as it ends."""
        assert self.run is not None
        limit, stored = self.engine.cfg.max_tokens, ""
        try:
            if go is not None:
                went = await self._went_on(job, ctx, text, go)
                text, used = went.text, used + went.completion_tokens
                stored = job.suggestion if went.completion_tokens else ""
                if went.finish_reason == "stop" or used >= limit:
                    phases = []  # the model ended the block, or no tokens are left
            for lines in phases:
                request = replace(
                    self.engine._request(ctx),
                    max_lines=lines,
                    assistant_prefix=text,
                    max_tokens=limit - used,
                    max_time_s=None,  # no bound: nobody waits for it, or only within their own
                    priority="background",
                )
                more = await self.run(request, ctx)
                if more is None:
                    return
                # A shown first line (not resting) that the model ends the block with.
                job.then_next = not job.resting and more.finish_reason == "stop"
                job.then_next &= blank(more.text)
                text += more.text
                used += getattr(more, "completion_tokens", 0) or 0
                at = ctx if lines == ctx.max_lines else replace(ctx, max_lines=lines)
                stored = self.engine.keep_answer(at, replace(more, text=text)) or ""
                job.suggestion = stored or job.suggestion
                job.stored.set()
                if not stored or used >= limit or more.finish_reason == "length":
                    break
        except Exception as exc:  # background work fails quietly
            log.debug("the rest of the answer at %s failed: %s", ctx.uri, exc)
        finally:
            self._done(ctx.uri, job)
            job.stored.set()
        if stored:
            self._items[ctx.uri] = job  # asked again: a pregenerated item; dropped if stale
            self.stats.rest_stored += 1
        if job.then_next and not self._jobs:  # no newer job (one at a time, in any document)
            # The line after the block, as after any whole answer: accept -> next ghost text
            # was a fresh generation (0.6-1.4 s), mostly to find that nothing fits there.
            self.after(ctx, job.suggestion)

    async def _join_rest(
        self, job: Job, prefix: str, suffix: str, arrived: float | None, whole: bool = True
    ) -> str | None:
        """A request at a position the running rest `job` answers: its suggestion there as soon
        as the job stored one (typing through it; at the block start itself, when `whole`, the
        block as far as it is stored by the bound, as `block_by`), within inline.max_ms from
        `arrived`; "" when none came by then (the job goes on); None when the job ended with
        nothing there (ask the model). The caller counts the request as joined."""
        assert job.task is not None and job.ctx is not None
        start = time.monotonic() if arrived is None else arrived
        end = start + answer_by(self.engine.cfg.max_ms)
        if job.go is not None:  # the generation going on: no cut before then
            job.go.extend(end)
        cache, uri = self.engine.cache, job.ctx.uri
        whole &= job.key == (prefix, suffix) and job.ctx.max_lines is None  # the block's start
        while True:
            job.stored.clear()
            item = cache.lookup(uri, prefix, suffix, count=False)
            if (item and not whole) or job.task.done():
                return item
            # Shielded: a timeout or a client cancel leaves the job running for the next.
            waits = {asyncio.ensure_future(job.stored.wait()), asyncio.shield(job.task)}
            done, pending = await asyncio.wait(
                waits, timeout=max(0.0, end - time.monotonic()), return_when="FIRST_COMPLETED"
            )
            for w in pending:
                w.cancel()
            if not done:
                item = cache.lookup(uri, prefix, suffix, count=False)
                if item:  # the block's lines stored by the bound
                    return item
                self.stats.ahead_late += 1
                why.note("the answer going on at this position had no line by inline.max_ms")
                return ""

    async def _resume(self, uri: str, job: Job, arrived: float) -> str:
        """A next job's line, cut by its own cap, continued by the request that waited for it
        (within its inline.max_ms from `arrived`) from the job's text, which the KV cache holds:
        the suggestion ("": none, and no fresh start after it: its time is spent)."""
        ctx, cut = job.ctx, job.cut
        left = self.engine.cfg.max_tokens - cut.completion_tokens
        if ctx is None or left <= 0:
            return ""
        self.stats.ahead_resumed += 1
        request = replace(self.engine._request(ctx, arrived), assistant_prefix=cut.text)
        more = await self.engine._run(ctx, replace(request, max_tokens=left))
        if more is None:
            return ""
        self._items[uri] = job  # answered from the work ahead: work ahead again after it
        return self.engine.keep_answer(ctx, replace(more, text=cut.text + more.text)) or ""

    def _going_on(self, ctx: CursorContext, suggestion: str) -> bool:
        """Whether a rest job at ctx's position (running, or its block stored) is the work
        ahead after `suggestion`, the block's first line: no next job then."""
        key = (ctx.prefix, ctx.suffix)
        running = self._jobs.get(ctx.uri)
        if running is not None and running.kind == "rest" and running.key == key:
            return True
        item = self._items.get(ctx.uri)
        return (
            item is not None
            and item.kind == "rest"
            and item.key == key
            and (item.suggestion != suggestion)
        )
