"""The next-suggestion jobs of inline/ahead.py (kind "next"): after a suggestion is shown, the
suggestion that would follow it if the user accepted it, pregenerated into the inline cache.

Two ways to it (issue #17 item 2):

- **the shown answer's own generation goes on** (types.GoOn): a local model's line request
  does not stop where its answer ends; the same decode, with the prompt and the answer in its
  KV cache, writes the next line at background priority, and that is the next item, at the
  position after the suggestion. No second job: no gap after the answer, no prompt built and
  matched against the prompt cache again, no first step.
- **a job of its own** (`_next`), when the answer's generation did not go on (it had ended,
  or it wrote nothing after the suggestion): the document with the suggestion inserted, the
  cursor at its end, as a background request.

Either is bounded as an automatic request there would be (inline.max_ms from its start,
max_tokens), and one line at most, so that it is done by the time the user accepts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlxd.prompts import CursorContext
from mlxd.types import GoOn

from . import rerank
from .cuts import answer_by
from .jobs import AheadPart, Continued, Job

if TYPE_CHECKING:
    from .engine import Document

log = logging.getLogger("mlxd.inline.ahead")


class NextJobs(AheadPart):
    """The next jobs of inline/ahead.py's Ahead (mixed into it; AheadPart: what they use of it)."""

    def _going_on(self, ctx: CursorContext, suggestion: str) -> bool: ...

    def going_on(self, ctx: CursorContext) -> GoOn:
        """For a line's request at `ctx`: its generation goes on with the line after it (the
        next suggestion, `after`), bounded as the next job would be."""
        cfg = self.engine.cfg
        lines = (ctx.max_lines or 1) + 1
        return GoOn(lines, answer_by(cfg.max_ms), cfg.max_tokens)

    def after(
        self,
        ctx: CursorContext,
        suggestion: str,
        neighbors: Iterable[Document] = (),
        go: GoOn | None = None,
    ) -> None:
        """A suggestion was shown at `ctx` (served locally): pregenerate the one after it,
        from `go` (its own generation going on, when it did) or with a job of its own."""
        nxt = self._next_context(ctx, suggestion)
        if nxt is None:
            if go is not None:
                go.stop()
            return
        self._stop_all()
        key = (nxt.prefix, nxt.suffix)
        job = Job("next", base=ctx.prefix, suggestion=suggestion, suffix=ctx.suffix, key=key)
        if go is not None and go.started:
            job.go = go
            job.task = asyncio.ensure_future(self._continued(job, nxt, go, list(neighbors)))
        else:
            job.task = asyncio.ensure_future(self._next(job, nxt, list(neighbors)))
        self._jobs[ctx.uri] = job
        self.stats.ahead_started += 1

    def _next_context(self, ctx: CursorContext, suggestion: str) -> CursorContext | None:
        """The context after `suggestion` is accepted at `ctx`, one line at most; None when
        there is nothing to do (off, a rest job there, an item already cached)."""
        if not (self.enabled and suggestion) or self._going_on(ctx, suggestion):
            return None
        text = ctx.prefix + suggestion + ctx.suffix
        nxt = self.engine.context_for(
            text, len(ctx.prefix) + len(suggestion), ctx.uri, ctx.language
        )
        if self.engine.cache.peek(ctx.uri, nxt.prefix, nxt.suffix) is not None:
            return None  # already known (a repeat, or a job that ran before)
        running = self._jobs.get(ctx.uri)
        if (
            running is not None
            and running.kind == "next"
            and running.key == (nxt.prefix, nxt.suffix)
        ):
            return None  # already under way (a block's rest job started it as it ended)
        # One line at most: the quickest item to have ready when the user accepts (about
        # ACCEPT_S later), and the next job follows once this one is accepted in turn.
        nxt.max_lines = 1
        # The shown suggestion's header (its neighbour snippets were matched a line higher):
        # the job's prompt then extends the one just run, whose KV the model has cached.
        nxt.header = ctx.header
        return nxt

    async def _next(self, job: Job, ctx: CursorContext, neighbors: list[Document]) -> None:
        assert self.run is not None
        ctx.header = ctx.header or self.engine._header(ctx, neighbors)
        # Bounded as an automatic request there would be, from now: inline.max_ms (which also
        # makes the local backend pick a prompt it can prefill in time, the cached one) and
        # max_tokens. Uncapped, it ran on past the moment the user accepted, and a request
        # that joined it gave up at its own bound: no accept was ever a cache hit.
        request = replace(self.engine._request(ctx, time.monotonic()), priority="background")
        job.ctx, answer = ctx, None
        try:
            if job.resting and rerank.wanted(self.engine, ctx):  # time to spare: candidates
                early = lambda greedy: self._early(job, ctx, greedy)  # noqa: E731
                answer = await rerank.reranked(self.engine, ctx, request, self.run, early)
            else:
                answer = await self.run(request, ctx)
        except Exception as exc:
            log.debug("next suggestion for %s failed: %s", ctx.uri, exc)
        finally:
            self._done(ctx.uri, job)
        deadline: float = request.deadline  # type: ignore[assignment]
        job.timed_out = answer is None and time.monotonic() >= deadline
        self._landed(job, ctx, answer)

    def _early(self, job: Job, ctx: CursorContext, answer: Any) -> bool:
        """A reranking resting job's greedy answer, kept at its position before the others
        are scored: a request that joins the job meanwhile is answered with it (ahead.join),
        as a pregenerated item (work ahead after it, which stops the reranking: a shown
        suggestion is not replaced under the user). Whether there is one to show."""
        if answer is None or not self.engine.keep_answer(ctx, answer):
            return False
        self._items[ctx.uri] = job
        job.stored.set()
        return True

    async def _continued(
        self, job: Job, ctx: CursorContext, go: GoOn, neighbors: list[Document]
    ) -> None:
        """The next suggestion from the shown one's own generation going on (`go`): what it
        wrote after the suggestion, kept at `ctx` as a next job's answer would be; a job of
        its own (`_next`) when it wrote nothing after it."""
        job.ctx = ctx
        try:
            await go.wait()
        finally:
            go.stop()  # cancelled (a request elsewhere, an edit, didClose): no more of it
        text, finish = go.text, go.finish_reason
        rest = text[len(job.suggestion) :] if text.startswith(job.suggestion) else ""
        if finish is None or not rest.strip():
            await self._next(job, ctx, neighbors)  # it stopped, or the model ended here
            return
        answer = Continued(rest, finish, go.tokens)
        self._landed(job, ctx, answer)
        if job.stored_item:
            self.stats.ahead_continued += 1

    async def _at_rest(self, job: Job, ctx: CursorContext, neighbors: list[Document]) -> None:
        """The suggestion where the cursor rests (mlxd/didMoveCursor), once its prompt is
        warm: a next job at the cursor itself (`job`, a warm-up until now), so that a request
        there (Neovim asks on InsertEnter; any editor once the user types along it) is a
        cache hit, or waits for it within its own bound."""
        if self.engine.cache.peek(ctx.uri, ctx.prefix, ctx.suffix) is not None:
            return  # known already
        job.kind, job.resting = "next", True
        job.base, job.suffix, job.key = ctx.prefix, ctx.suffix, (ctx.prefix, ctx.suffix)
        await self._next(job, ctx, neighbors)
        if item := self.engine.cache.peek(ctx.uri, *job.key):
            job.suggestion = item  # typing along it keeps it (jobs.typed_along)
            self.stats.cursor_items += 1
            if job.cut is not None and ctx.max_lines is None and not ctx.single_line:
                # A block start whose time cap cut the block after its first lines: the rest
                # goes on into the cache from the cut text, as after a shown first line
                # (rest.py). It stopped there: at the 3 s pause the quality bench's blocks
                # were their first line, and asking again 1.5 s later showed no more.
                self.go_on(ctx, job.cut, item, block=True, resting=True)
        elif job.cut is not None or job.timed_out:
            # Its time cap cut the first line (or came before a first token): the line goes on
            # into the cache from the cut text (rest.py), where a request joins it. Before, a
            # request after the job had ended asked the model afresh and its own bound cut the
            # same line again (the quality bench's empty Lua lines at its 3 s pause).
            self.go_on(ctx, job.cut, None, block=False, resting=True)

    def _landed(self, job: Job, ctx: CursorContext, answer: Any) -> None:
        """A next job's answer: kept in the cache at its position (an item), and its text
        when a cap cut it, for a request waiting for the job to go on from (`_resume`)."""
        if getattr(answer, "finish_reason", "") == "length" and answer.text:
            job.cut = answer
        self._done(ctx.uri, job)
        if answer is not None:
            self.engine.keep_answer(ctx, answer)
        # A line cut by max_tokens leaves nothing to show, and nothing is cached.
        if self.engine.cache.peek(ctx.uri, *job.key) is not None:
            self._items[ctx.uri] = job
            job.stored_item = True
            self.stats.ahead_stored += 1
