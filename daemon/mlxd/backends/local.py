"""A local MLX model as a backend: the prompt, then the shared pool and batch engine.

One LocalBackend per configured local model ("local" from [local], plus any
[backends.NAME] with protocol = "mlx"); all of them share one ModelPool, so they share the
single MLX thread, the memory budget and the eviction order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..config import DEFAULT_MAX_TOKENS, InlineConfig
from ..errors import ContextOverflow
from ..models import (
    MIN_PROMPT_TOKENS,
    OPEN_THINK,
    Healer,
    Job,
    ModelPool,
    RecentPrompts,
    SpeedMeter,
    ThinkSplitter,
    fits,
    heal_point,
    prompt_step,
    vocabulary,
)
from ..prompts import Window, detect, fit_window
from ..types import Delta, Done, Event, Message, Request

log = logging.getLogger(__name__)


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
        hub: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.pool = pool
        self.hub = hub  # the HF_* settings of the window (None: this process's)
        self.dequantize = dequantize
        self.inline_cfg = inline_cfg or InlineConfig()
        self.speed = SpeedMeter()  # this model's prefill/decode speed here, as measured
        self.recent = RecentPrompts()  # what the KV cache most likely holds
        self._warming: Job | None = None  # a prefill a deadline cut, finishing in background

    @property
    def loaded(self) -> bool:
        return self.pool.loaded(self.spec)

    async def ensure_loaded(self) -> Any:
        entry = await self.pool.acquire(self.spec, self.dequantize, self.hub)
        # Token healing's index of the vocabulary (~0.5 s for 50k tokens on a busy core):
        # built with the preload, not on the first inline request at a cursor mid-word.
        await asyncio.to_thread(vocabulary, entry.engine.lm.tokenizer)
        return entry

    def fences_prompt(self, request: Request) -> bool:
        return False  # a completion prompt is the raw code (or FIM), never fenced

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        entry = await self.pool.acquire(self.spec, self.dequantize, self.hub)
        lm = entry.engine.lm
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        # None: the router fills it; 0: prefill only (the prompt's KV cache, no text).
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        # Tokenizing a long prompt takes seconds: off the event loop (the tokenizer releases
        # the GIL), so the daemon keeps answering meanwhile.
        tokens, max_tokens, healer = await asyncio.to_thread(self._prompt, lm, request, max_tokens)
        job = Job(
            tokens=tokens,
            max_tokens=max_tokens,
            temperature=request.temperature,
            stop=request.stop,
            stop_tokens=_end_tokens(lm.tokenizer) if request.kind != "chat" else frozenset(),
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            deadline=_deadline(request),
            background=request.priority == "background",
            healer=healer,
        )
        entry.engine.submit(job)
        self.recent.add(tokens)
        start = time.monotonic()
        first = last = None
        # A chat template that ends the prompt in <think> makes the model answer from inside a
        # reasoning block: its text up to </think> is reasoning, as a provider would mark it.
        think = ThinkSplitter(opened=True) if _opens_think(lm.tokenizer, tokens) else None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                last = time.monotonic()
                if first is None:
                    first = last
                    if not job.background:  # its wait for other work is not model speed
                        self.speed.observe_prefill(len(tokens) - job.reused, first - start)
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
            job.cancelled.set()  # leaves the batch before the next decode step
            cut = job.deadline is not None and time.monotonic() >= job.deadline
            if first is None and not job.background:
                self._observe_cut(job, cut, time.monotonic() - start)
            if first is None and cut:
                self._warm(entry, tokens)
            self.pool.touch(entry)
            if first is not None and last is not None and not job.background:
                self.speed.observe_decode(job.generated - 1, last - first)

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

    def _prompt(
        self, lm: Any, req: Request, max_tokens: int
    ) -> tuple[list[int], int, Healer | None]:
        """`_fit`'s tokens and max_tokens, and for an inline prompt that ends mid-word its
        last token given back to the answer (models/healing.py: the Healer makes the answer
        type it again first, and leaves it out of the text). Runs off the event loop."""
        tokens, max_tokens = self._fit(lm, req, max_tokens)
        if req.kind != "inline" or max_tokens <= 0:
            return tokens, max_tokens, None
        kept, healed = heal_point(lm.tokenizer, tokens)
        return kept, max_tokens, Healer.of(lm.tokenizer, healed) if healed else None

    def _fit(self, lm: Any, req: Request, max_tokens: int) -> tuple[list[int], int]:
        """The prompt's tokens and the answer's max_tokens (fit_prompt); an inline prompt is
        sized so that prefilling what the KV cache does not hold, plus one line, fits the
        request's time cap (models/budget.py): a smaller window is cut from the one trimmed
        to the full budget, its lines not tokenized again. Runs off the event loop."""
        budget = req.context_tokens or self.inline_cfg.context_tokens
        if req.kind == "chat":
            return fit_prompt(lm, req, budget, max_tokens)
        window = fit_window_for(lm, req, budget, max_tokens)  # the one trim
        full = render(lm, req, window, max_tokens)
        end = _deadline(req)
        if req.kind != "inline" or end is None:
            return full
        allowed = self.speed.new_tokens_within(max(0.0, end - time.monotonic()))
        if fits(len(full[0]), self.recent.cached(full[0]), allowed):
            return full
        log.debug(
            "%s: %d prompt tokens, %d allowed by the time cap", self.name, len(full[0]), allowed
        )
        small = render(lm, req, window.narrowed(prompt_step(allowed)), max_tokens)
        cached = self.recent.cached(small[0])  # a smaller window may be cached as well
        if cached:
            narrower = window.narrowed(max(MIN_PROMPT_TOKENS, allowed + cached))
            wider = render(lm, req, narrower, max_tokens)
            if fits(len(wider[0]), self.recent.cached(wider[0]), allowed):
                return wider
        return small

    async def close(self) -> None:
        pass  # the pool (shared) is closed by its owner


def _ignore(item: Any) -> None:
    """Where background warm-up results go: nobody waits for them (a failure is logged by the
    engine)."""


def _deadline(req: Request) -> float | None:
    """When the answer must be complete (monotonic), if the request says."""
    if req.deadline is not None:
        return req.deadline
    return time.monotonic() + req.max_time_s if req.max_time_s else None


def _opens_think(tok: Any, tokens: list[int]) -> bool:
    return tok.decode(tokens[-8:]).rstrip().endswith(OPEN_THINK)


def context_window(model: Any) -> int | None:
    """The model's context length in tokens, from its config (None: unknown, not guarded)."""
    args = getattr(model, "args", None)
    for key in _WINDOW_KEYS:
        value = getattr(args, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


_WINDOW_KEYS = ("max_position_embeddings", "max_seq_len", "n_ctx", "context_length", "seq_length")


def fit_prompt(lm: Any, req: Request, budget: int, max_tokens: int) -> tuple[list[int], int]:
    """The prompt's tokens and the max_tokens left for the answer, within the model's context
    window: a chat loses its oldest turns (system messages and the latest turn stay), a
    completion's `budget` (tokens around the cursor) shrinks, and max_tokens is cut to what
    fits. Raises ContextOverflow, naming the limit, when even the shortest prompt does not
    fit."""
    if req.kind != "chat":
        return render(lm, req, fit_window_for(lm, req, budget, max_tokens), max_tokens)
    window = context_window(lm.model)
    tokens = _chat_tokens(lm.tokenizer, req, window, max_tokens)
    return _checked(lm, tokens, window, max_tokens)


def fit_window_for(lm: Any, req: Request, budget: int, max_tokens: int) -> Window:
    """A completion's text cut to `budget` tokens of the model's tokenizer (the one trim:
    prompts.fit_window), less when the context window must keep room for the answer."""
    tok, window = lm.tokenizer, context_window(lm.model)
    if window is not None:
        budget = max(1, min(budget, window - min(max_tokens, window // 2)))
    count = lambda s: len(tok.encode(s, add_special_tokens=False))  # noqa: E731
    fim = _fim_template(tok) is not None
    return fit_window(count, req.prefix, req.suffix, req.header, budget, fim)


def render(lm: Any, req: Request, window: Window, max_tokens: int) -> tuple[list[int], int]:
    """The tokens of a completion prompt for `window` (FIM when the model has FIM tokens, else a
    prefix continuation) and the max_tokens the context window leaves beside them."""
    tok = lm.tokenizer
    prompt = window.render(_fim_template(tok)) + req.assistant_prefix
    tokens = list(tok.encode(prompt, add_special_tokens=False))
    return _checked(lm, tokens, context_window(lm.model), max_tokens)


def _checked(
    lm: Any, tokens: list[int], window: int | None, max_tokens: int
) -> tuple[list[int], int]:
    """`tokens` and max_tokens cut to what the context window leaves; ContextOverflow, naming
    the limit, when the prompt alone fills it."""
    if window is None:
        return tokens, max_tokens
    if len(tokens) >= window:
        raise ContextOverflow(
            f"the prompt is {len(tokens)} tokens, over the context window of "
            f"{window} tokens of {lm.name}"
        )
    return tokens, min(max_tokens, window - len(tokens))


def _chat_tokens(tok: Any, req: Request, window: int | None, max_tokens: int) -> list[int]:
    def encode(msgs: list[Message]) -> list[int]:
        wire = [{"role": m.role, "content": m.content} for m in msgs]
        text = tok.apply_chat_template(wire, add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text + req.assistant_prefix, add_special_tokens=False))

    system = [m for m in req.messages if m.role == "system"]
    turns = [m for m in req.messages if m.role != "system"]
    tokens = encode(req.messages)
    if window is None:
        return tokens
    room = window - min(max_tokens, window // 2)  # keep room for an answer
    dropped = 0
    while len(tokens) > room and len(turns) > 1:
        turns.pop(0)
        while len(turns) > 1 and turns[0].role != "user":
            turns.pop(0)  # a conversation starts with a user turn
        dropped += 1
        tokens = encode(system + turns)
    if dropped:
        log.info(
            "chat trimmed to the context window (%d tokens): %d turns dropped", window, dropped
        )
    return tokens


# A tokenizer's FIM template never changes: detect it once, not on every keystroke.
_FIM_TEMPLATES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _fim_template(tokenizer: Any) -> Any:
    """The FIM template of a tokenizer (None: no FIM), from its special / added tokens."""
    if tokenizer not in _FIM_TEMPLATES:
        inner = getattr(tokenizer, "_tokenizer", tokenizer)
        names = set(getattr(inner, "all_special_tokens", []) or [])
        added = getattr(inner, "get_added_vocab", None)
        if added:
            names.update(added())
        _FIM_TEMPLATES[tokenizer] = detect(sorted(names))
    return _FIM_TEMPLATES[tokenizer]


_END_TOKENS: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()


def _end_tokens(tokenizer: Any) -> frozenset[int]:
    """The ids of the tokenizer's FIM end tokens (the template's `eot_tokens` that are in its
    vocabulary): a completion stops on them in the batch engine, like on EOS."""
    if tokenizer not in _END_TOKENS:
        template = _fim_template(tokenizer)
        vocab = getattr(tokenizer, "_tokenizer", tokenizer).get_vocab() if template else {}
        ends = template.eot_tokens if template else []
        _END_TOKENS[tokenizer] = frozenset(vocab[t] for t in ends if t in vocab)
    return _END_TOKENS[tokenizer]
