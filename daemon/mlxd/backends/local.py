"""A local MLX model as a backend: the prompt, then the shared pool and batch engine.

One LocalBackend per configured local model ("local" from [local], plus any
[backends.NAME] with protocol = "mlx"); all of them share one ModelPool, so they share the
single MLX thread, the memory budget and the eviction order.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from ..config import DEFAULT_MAX_TOKENS, InlineConfig
from ..models import Job, ModelPool
from ..types import Done, Event, Request


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
    ) -> None:
        self.name = name
        self.spec = spec
        self.pool = pool
        self.dequantize = dequantize
        self.inline_cfg = inline_cfg or InlineConfig()

    @property
    def loaded(self) -> bool:
        return self.pool.loaded(self.spec)

    async def ensure_loaded(self) -> Any:
        return await self.pool.acquire(self.spec, self.dequantize)

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        entry = await self.pool.acquire(self.spec, self.dequantize)
        lm = entry.engine.lm
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = Job(
            tokens=_prompt_tokens(lm.tokenizer, request, self.inline_cfg),
            max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,  # the router fills it
            temperature=request.temperature,
            stop=request.stop,
            stop_tokens=_end_tokens(lm.tokenizer) if request.kind != "chat" else frozenset(),
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            deadline=time.monotonic() + request.max_time_s if request.max_time_s else None,
        )
        entry.engine.submit(job)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Done):
                    return
        finally:
            job.cancelled.set()  # leaves the batch before the next decode step
            self.pool.touch(entry)

    async def close(self) -> None:
        pass  # the pool (shared) is closed by its owner


def _prompt_tokens(tok: Any, req: Request, inline_cfg: InlineConfig) -> list[int]:
    if req.kind == "chat":
        msgs = [{"role": m.role, "content": m.content} for m in req.messages]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text + req.assistant_prefix, add_special_tokens=False))
    prompt = req.prompt if req.prompt is not None else _completion_prompt(tok, req, inline_cfg)
    return list(tok.encode(prompt + req.assistant_prefix, add_special_tokens=False))


def _completion_prompt(tok: Any, req: Request, inline_cfg: InlineConfig) -> str:
    """FIM when the model has FIM tokens, else a prefix continuation; trimmed to budget with
    the model's own tokenizer."""
    from ..prompts import context_at, prompt_for_local

    ctx = context_at(req.prefix + req.suffix, len(req.prefix), language=req.language)
    return prompt_for_local(
        _fim_template(tok),
        lambda s: len(tok.encode(s, add_special_tokens=False)),
        replace(ctx, header=req.header),
        inline_cfg.context_tokens,
    )


# A tokenizer's FIM template never changes: detect it once, not on every keystroke.
_FIM_TEMPLATES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _fim_template(tokenizer: Any) -> Any:
    """The FIM template of a tokenizer (None: no FIM), from its special / added tokens."""
    if tokenizer not in _FIM_TEMPLATES:
        from ..prompts import detect

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
