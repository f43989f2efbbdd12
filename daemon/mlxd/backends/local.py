"""A local MLX model as a backend: the prompt, then the shared pool and batch engine.

One LocalBackend per configured local model ("local" from [local], plus any
[backends.NAME] with protocol = "mlx"); all of them share one ModelPool, so they share the
single MLX thread, the memory budget and the eviction order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_MAX_TOKENS, InlineConfig
from ..models import (
    LINE_TOKENS,
    MIN_PROMPT_TOKENS,
    OPEN_THINK,
    Healer,
    Job,
    ModelPool,
    RecentPrompts,
    SpeedMeter,
    ThinkSplitter,
    fits,
    healed_prompt,
    prompt_step,
    warm_rung,
    warm_rungs,
)
from ..prompts import Window
from ..types import Delta, Done, Event, Held, Request
from .go_on import went_on_with
from .local_draft import DraftModel
from .local_jobs import began as _began
from .local_jobs import deadline as _deadline
from .local_jobs import job_for as _job
from .local_jobs import log_job as _log_job
from .local_jobs import past as _past
from .local_prompt import (
    checked,
    context_window,
    fim_template,
    fit_prompt,
    fit_window_for,
    render,
    room,
    top_window,
)
from .reuse import Heads, cached_start, continued, snippets_first, widest_cached

if TYPE_CHECKING:
    from ..models import WindowEnv

log = logging.getLogger(__name__)
KEPT_WAIT_S = 0.5  # longest wait for a background job's KV cache to be kept (one step)


class LocalBackend:
    is_local = True

    def __init__(
        self,
        name: str,
        spec: str,
        pool: ModelPool,
        *,
        dequantize: str = "auto",
        inline_cfg: InlineConfig | None = None,
        hub: WindowEnv | None = None,
        draft: str = "",
        warn: Any = None,
    ) -> None:
        self.name = name
        self.spec = spec
        # A small model of the same vocabulary that drafts for greedy decoding (local
        # draft_model; "": prompt lookup), loaded in the same pool.
        self.draft = draft
        self._drafts = DraftModel(draft, warn)  # `warn`: tells the window once
        self.pool = pool
        self.hub = hub  # the window whose environment a download runs with (None: this process's)
        self.dequantize = dequantize
        self.inline_cfg = inline_cfg or InlineConfig()
        self.speed = SpeedMeter()  # this model's prefill/decode speed here, as measured
        self.recent = RecentPrompts()  # what the KV cache most likely holds
        self._warming: Job | None = None  # a prefill a deadline cut, finishing in background
        self.heads = Heads()  # the prompts timed inline requests used, for their continuations

    @property
    def loaded(self) -> bool:
        return self.pool.loaded(self.spec)

    @property
    def specs(self) -> tuple[str, ...]:
        """The pool's models this backend uses: its model, and its draft model if any (not
        one of another vocabulary: nothing uses it, the pool may forget it)."""
        usable = self.draft and self._drafts.failed is None
        return (self.spec, self.draft) if usable else (self.spec,)

    async def ensure_loaded(self) -> Any:
        entry = await self.pool.acquire(self.spec, self.dequantize, self.hub)
        await self._drafts.acquire(self.pool, self.spec, self.dequantize, self.hub)
        return entry  # token healing's vocabulary: built by the loader (models/loader.py)

    def fences_prompt(self, request: Request) -> bool:
        return False  # a completion prompt is the raw code (or FIM), never fenced

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        greedy = request.temperature == 0 and request.max_tokens != 0
        how = (self.pool, self.spec, self.dequantize, self.hub)
        drafts = await self._drafts.acquire(*how) if greedy else None  # its pool entry
        entry = await self.pool.acquire(self.spec, self.dequantize, self.hub)
        lm = entry.engine.lm
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        # None: the router fills it; 0: prefill only (the prompt's KV cache, no text).
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        emit = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        draft = drafts.engine.lm if drafts is not None else None
        job = await self._submit(entry, request, max_tokens, emit, draft)
        tokens = job.tokens
        start = time.monotonic()
        first = last = None
        # A chat template that ends the prompt in <think> makes the model answer from inside a
        # reasoning block: its text up to </think> is reasoning, as a provider would mark it.
        think = ThinkSplitter(opened=True) if _opens_think(lm.tokenizer, tokens) else None
        go, over = request.go_on, False  # over: the generation ended (Done, or it failed)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    over = True
                    raise item
                over = isinstance(item, Done)
                if go is not None and isinstance(item, Delta):
                    go.text += item.text  # the answer's part, as generated
                if isinstance(item, Held):  # paused for an inline request: tell the router
                    yield item
                    continue
                last = time.monotonic()
                if first is None:
                    first = last
                    self._observe_first(job, start, first)
                if think is not None:
                    piece = think.feed(item.text) if isinstance(item, Delta) else think.flush()
                    if piece.reasoning:
                        yield Delta(piece.reasoning, reasoning=True)
                    if piece.text:
                        yield Delta(piece.text)
                    if isinstance(item, Delta):
                        continue
                yield item
                if isinstance(item, Done):
                    return
        finally:
            # An answer that ended before its generation: it may go on (types.GoOn).
            going = not over and go is not None and first is not None
            if not going:
                job.cancelled.set()  # leaves the batch before the next decode step
            self._ended(entry, job, start, first, last)
            if going and not went_on_with(job, go, queue):  # type: ignore[arg-type]
                job.cancelled.set()
            if job.background and first is not None and _past(job.deadline):
                # A request may go on from a cut answer (inline/ahead.py): its KV cache first.
                await asyncio.to_thread(job.ended.wait, KEPT_WAIT_S)

    async def _submit(
        self, entry: Any, request: Request, max_tokens: int, emit: Any, draft: Any = None
    ) -> Job:
        """The request's prompt, then its job handed to the batch engine. Tokenizing a long
        prompt takes seconds: off the event loop (the tokenizer releases the GIL), so the
        daemon keeps answering meanwhile; streams pause while an inline prompt is built."""
        lm = entry.engine.lm
        # What the KV cache holds: recent prompts, and the sequences the engine kept (answers).
        seen = self.recent.plus(list(entry.engine.kept))
        inline = request.kind == "inline" and request.priority != "background"
        mark = entry.engine.expect(_deadline(request)) if inline else None
        try:
            tokens, max_tokens, healer = await asyncio.to_thread(
                self._prompt, lm, request, max_tokens, seen
            )
        except BaseException:
            if mark is not None:
                mark.cancelled.set()  # no job will take its place
            raise
        job = _job(lm, request, tokens, max_tokens, healer, emit)
        job.mark = mark  # the engine drops it when it admits the job
        job.draft = draft
        self._take_over(tokens)
        entry.engine.submit(job)
        self.recent.add(tokens)
        return job

    def _ended(
        self, entry: Any, job: Job, start: float, first: float | None, last: float | None
    ) -> None:
        """A stream is over: the speed it tells; a cut prefill goes on in the background."""
        cut = _past(job.deadline)
        if log.isEnabledFor(logging.DEBUG) and job.inline:
            _log_job(self.name, job, start, first, last, cut)
        if first is None and not job.background:  # a pause for inline work is not its speed
            now = time.monotonic()
            self._observe_cut(job, cut, now - _began(job, start) - job.held(now))
        if first is None and cut:
            self._warm(entry, job.tokens)
        self._unfilled(job)
        self.pool.touch(entry)
        if first is not None and last is not None and not job.background:
            held = job.held_s - job.held_first_s  # paused for inline requests: not its speed
            self.speed.observe_decode(job.generated - 1, last - first - held)

    def _unfilled(self, job: Job) -> None:
        """A warm-up stopped part-way (a request came): only what it prefilled is cached.
        Counted whole, the time fit chose a window from its start that was mostly not
        prefilled (bench quality: 638 prompt tokens, 198 cached), and the answer was cut."""
        if job.background and job.max_tokens <= 0 and job.prefilled < len(job.tokens):
            self.recent.held(job.tokens, job.prefilled)

    def _observe_first(self, job: Job, submitted: float, first: float) -> None:
        """The prefill speed a first token tells (monotonic times): from when the engine took
        the job, less its pauses for inline work, and for a background job nothing (its waits
        for interactive work are not model speed)."""
        if not job.background:
            took = first - _began(job, submitted) - job.held_first_s
            self.speed.observe_first_token(len(job.tokens) - job.reused, took)

    def _observe_cut(self, job: Job, by_deadline: bool, seconds: float) -> None:
        """A prefill stopped before its first token still tells the prefill speed: its
        progress so far, or, cut by its deadline with none, at most its prompt in that time.
        Without it, a first guess too fast for this machine would never be corrected, and
        every inline request would be cut."""
        done = job.prefilled - job.reused
        if done <= 0 and by_deadline:
            done = len(job.tokens) - job.reused
        if done > 0:
            self.speed.observe_prefill(done, seconds)

    def _warm(self, entry: Any, tokens: list[int]) -> None:
        """Finish, as background work, the prefill that a deadline cut (issue #17 item 3: the
        bound is kept by answering nothing only when nothing could be answered), so that the
        next request with this prefix, the next keystroke, finds it in the KV cache. One at a
        time: a newer one drops the older, stale one."""
        if self._warming is not None:
            self._warming.cancelled.set()
        self._warming = Job(
            tokens=tokens, max_tokens=0, temperature=0.0, stop=[], emit=_ignore, background=True
        )
        entry.engine.submit(self._warming)

    def _take_over(self, tokens: list[int]) -> None:
        """A job whose prompt starts with the cut prefill finishing in the background takes it
        over: the prefill stops, its KV so far kept in the prompt cache (the batch engine drops
        a cancelled job before it admits the next), and the job prefills only the rest."""
        warming = self._warming
        if warming is not None and tokens[: len(warming.tokens)] == warming.tokens:
            warming.cancelled.set()
            self._warming = None

    def _prompt(
        self, lm: Any, req: Request, max_tokens: int, seen: RecentPrompts
    ) -> tuple[list[int], int, Healer | None]:
        """`_fit`'s tokens and max_tokens, and for an inline prompt that ends mid-word or with a
        line break its last token given back to the answer (models/healing.py: the Healer makes
        the answer type it again first, and leaves it out of the text). Runs off the event
        loop."""
        tokens, max_tokens = self._fit(lm, req, max_tokens, seen)
        if req.kind == "inline" and not req.assistant_prefix and _deadline(req) is not None:
            self.heads.add(req, tokens)  # as rendered: a continuation heals on its own
        if req.kind != "inline" or max_tokens <= 0:
            return tokens, max_tokens, None
        kept, healer = healed_prompt(lm.tokenizer, tokens)
        return kept, max_tokens, healer

    def _fit(
        self, lm: Any, req: Request, max_tokens: int, seen: RecentPrompts
    ) -> tuple[list[int], int]:
        """The prompt's tokens and the answer's max_tokens (fit_prompt); an inline prompt is
        sized so that prefilling what the KV cache does not hold, plus one line, fits the
        request's time cap (models/budget.py): a smaller window is cut from the one trimmed
        to the full budget, its lines not tokenized again. Runs off the event loop."""
        budget = req.context_tokens or self.inline_cfg.context_tokens
        if req.kind == "chat":
            return fit_prompt(lm, req, budget, max_tokens)
        if req.window == "top":  # a warm-up of the document's first lines (inline/ahead.py)
            return render(lm, req, top_window(lm, req, budget, max_tokens), max_tokens)
        end = _deadline(req)
        head = self.heads.get(req) if req.assistant_prefix or end is None else None
        if head is not None:  # the prompt used here a moment ago, whose KV the model holds
            text = req.assistant_prefix
            tokens = continued(lm.tokenizer, head, text, seen) if text else head
            return checked(lm, tokens, context_window(lm.model), max_tokens)
        window = fit_window_for(lm, req, budget, max_tokens)  # the one trim
        full = render(lm, req, window, max_tokens)
        if req.narrow_to and not fits(len(full[0]), seen.cached(full[0]), MIN_PROMPT_TOKENS):
            # A rung of a cursor's warm-up (inline/ahead.py), unless the KV cache holds the
            # full window already (the cursor where the user types): that is a cache hit.
            rung = warm_rung(req.narrow_to, self.speed, self.inline_cfg.max_ms)
            return render(lm, req, window.narrowed(rung), max_tokens)
        if req.assistant_prefix:  # our own answer, cut: its tokens as the engine kept them
            head = render(lm, replace(req, assistant_prefix=""), window, max_tokens)[0]
            full = (continued(lm.tokenizer, head, req.assistant_prefix, seen), full[1])
        # A window a few lines wider whose start the KV cache holds (reuse.py), cut from the
        # text around the cursor with `window`'s header (clipped to the budget) and counts.
        fim = fim_template(lm.tokenizer) is not None
        text = Window(window.header, req.prefix, req.suffix if fim else "", window.count)
        wider = lambda b: render(lm, req, text.narrowed(b), max_tokens)  # noqa: E731
        full = cached_start(full, wider, budget, room(lm, max_tokens, 2 * budget), seen)
        if req.kind != "inline" or end is None:
            return full
        line = req.line_tokens or LINE_TOKENS
        allowed = self.speed.new_tokens_within(max(0.0, end - time.monotonic()), line)
        if fits(len(full[0]), seen.cached(full[0]), allowed):
            return full
        log.debug(
            "%s: %d prompt tokens, %d allowed by the time cap", self.name, len(full[0]), allowed
        )
        step = prompt_step(allowed)
        bare = lambda w: render(lm, req, replace(w, prefix="", suffix=""), max_tokens)[0]  # noqa: E731
        window = snippets_first(window, full[0], seen, bare)  # snippets go first (reuse.py)
        narrow = lambda b: render(lm, req, window.narrowed(b), max_tokens)  # noqa: E731
        rungs = [b for b in warm_rungs(budget) if b > step]  # what a warm-up left here
        if (warm := widest_cached(narrow, rungs, allowed, seen)) is not None:
            return warm
        small = cached_start(narrow(step), narrow, step, budget, seen)  # its start kept as well
        cached = seen.cached(small[0])  # a smaller window may be cached as well
        if cached:
            narrower = window.narrowed(max(MIN_PROMPT_TOKENS, allowed + cached))
            wider = render(lm, req, narrower, max_tokens)
            if fits(len(wider[0]), seen.cached(wider[0]), allowed):
                return wider
        return small

    async def close(self) -> None:
        pass  # the pool (shared) is closed by its owner


def _ignore(item: Any) -> None:
    """Where background warm-up results go: nobody waits for them (the engine logs a failure)."""


def _opens_think(tok: Any, tokens: list[int]) -> bool:
    return tok.decode(tokens[-8:]).rstrip().endswith(OPEN_THINK)
