"""The warm local MLX model: one load shared by all waiters, one generation thread, KV reuse.

All MLX work (load, generate, free) runs on a single dedicated thread: MLX streams are
thread-local, and one owner keeps the model's memory and caches consistent. The event loop
talks to that thread through a queue per request and a stop flag checked at every token, so a
cancelled request stops within one decode step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import InlineConfig, LocalConfig
from .base import Delta, Done, Event, ModelError, Request
from .stops import StopMatcher

log = logging.getLogger(__name__)

# (fraction 0..1, message) while loading; (state, message) on loading -> ready | error.
ProgressFn = Callable[[float, str], None]
StateFn = Callable[[str, str], None]


class LocalBackend:
    name = "local"
    is_local = True

    def __init__(
        self,
        cfg: LocalConfig,
        inline_cfg: InlineConfig | None = None,
        *,
        on_progress: ProgressFn | None = None,
        on_state: StateFn | None = None,
    ) -> None:
        self.cfg = cfg
        self.inline_cfg = inline_cfg or InlineConfig()
        self.on_progress = on_progress or (lambda f, m: None)
        self.on_state = on_state or (lambda s, m: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlxd-mlx")
        self._model: Any = None  # mlxd.models.LoadedModel once loaded
        self._loading: asyncio.Future[Any] | None = None
        self._prompt_cache: Any = None
        self.generations = 0  # requests that reached the model (tests and status read it)

    # --- model lifecycle --------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model_name(self) -> str:
        return self.cfg.model

    def reconfigure(self, cfg: LocalConfig, inline_cfg: InlineConfig) -> None:
        """A new config; a different model spec drops the loaded one (the next use reloads)."""
        changed = (cfg.model, cfg.dequantize) != (self.cfg.model, self.cfg.dequantize)
        self.cfg, self.inline_cfg = cfg, inline_cfg
        if changed:
            self._model = None
            self._prompt_cache = None
            self._loading = None

    async def ensure_loaded(self) -> Any:
        """Load once; concurrent callers share the same load and the same error."""
        if self._model is not None:
            return self._model
        if self._loading is None:
            self._loading = asyncio.get_running_loop().run_in_executor(
                self._executor, self._load, self.cfg.model, self.cfg.dequantize
            )
        loading = self._loading
        try:
            model = await asyncio.shield(loading)
        except ModelError:
            if self._loading is loading:
                self._loading = None  # the next request retries
            raise
        if self._loading is loading:
            self._model = model
        return model

    def _load(self, spec: str, dequantize: str) -> Any:
        from mlx_lm.models.cache import LRUPromptCache

        from ..models import load_model

        self.on_state("loading", f"loading {spec}")
        self.on_progress(0.0, f"loading {spec}")
        t0 = time.perf_counter()
        try:
            model = load_model(spec, dequantize=dequantize, progress=self.on_progress)  # type: ignore[arg-type]
        except ModelError as exc:
            self.on_state("error", exc.message)
            raise
        except Exception as exc:  # an unexpected failure still reaches every waiter clearly
            err = ModelError(f"cannot load model {spec}: {type(exc).__name__}: {exc}")
            self.on_state("error", err.message)
            raise err from exc
        self._prompt_cache = LRUPromptCache(max_size=16, max_bytes=self.cfg.prompt_cache_mb << 20)
        log.info("loaded %s in %.2fs", spec, time.perf_counter() - t0)
        self.on_progress(1.0, f"{spec} ready")
        self.on_state("ready", f"{spec} ready")
        return model

    # --- generation -------------------------------------------------------------------------
    async def stream(self, request: Request) -> AsyncIterator[Event]:
        lm = await self.ensure_loaded()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Event | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(self._executor, self._generate, lm, request, emit, stop)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Done):
                    return
        finally:
            stop.set()  # the generation thread sees it before its next token
            if job.done() and not job.cancelled():
                job.exception()  # already reported through the queue

    def _generate(
        self, lm: Any, req: Request, emit: Callable[[Any], None], stop: threading.Event
    ) -> None:
        try:
            self._run(lm, req, emit, stop)
        except BaseException as exc:  # MLX errors must reach the request, not die in the thread
            log.exception("local generation failed")
            emit(ModelError(f"generation failed: {type(exc).__name__}: {exc}"))

    def _run(
        self, lm: Any, req: Request, emit: Callable[[Any], None], stop: threading.Event
    ) -> None:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        if stop.is_set():
            return  # cancelled while queued behind another request
        self.generations += 1
        tokens = self._prompt_tokens(lm, req)
        cache, rest = self._prompt_cache.fetch_nearest_cache(lm.name, tokens)
        if cache is None:
            cache = make_prompt_cache(lm.model)
        if not rest:  # exact hit: recompute the last position to get fresh logits
            trim_prompt_cache(cache, 1)
            rest = tokens[-1:]
        max_tokens = req.max_tokens or self.cfg.max_tokens
        matcher = StopMatcher(req.stop)
        deadline = time.monotonic() + req.max_time_s if req.max_time_s else None
        generated: list[int] = []
        finish = "length"
        for resp in stream_generate(
            lm.model,
            lm.tokenizer,
            mx.array(rest),
            max_tokens=max_tokens,
            sampler=make_sampler(temp=req.temperature),
            prompt_cache=cache,
        ):
            generated.append(resp.token)
            if text := matcher.feed(resp.text):
                emit(Delta(text))
            if resp.finish_reason:
                finish = resp.finish_reason
            if matcher.stopped:
                finish = "stop"
                break
            if stop.is_set() or (deadline and time.monotonic() >= deadline):
                break
        if tail := matcher.flush():
            emit(Delta(tail))
        self._remember(lm.name, tokens + generated, cache)
        if not stop.is_set():
            emit(Done(finish, len(tokens), len(generated), lm.name))  # type: ignore[arg-type]

    def _remember(self, key: str, tokens: list[int], cache: list[Any]) -> None:
        """Keep the KV cache for reuse, keyed by exactly the tokens it holds."""
        from mlx_lm.models.cache import trim_prompt_cache

        held = getattr(cache[0], "offset", None)
        if held is None or held <= 0:
            return
        if held > len(tokens):  # a sampled token was fed but never returned
            trim_prompt_cache(cache, held - len(tokens))
            held = len(tokens)
        self._prompt_cache.insert_cache(key, tokens[:held], cache)

    def _prompt_tokens(self, lm: Any, req: Request) -> list[int]:
        tok = lm.tokenizer
        if req.kind == "chat":
            msgs = [{"role": m.role, "content": m.content} for m in req.messages]
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            text += req.assistant_prefix
            return list(tok.encode(text, add_special_tokens=False))
        prompt = req.prompt if req.prompt is not None else self._completion_prompt(lm, req)
        return list(tok.encode(prompt + req.assistant_prefix, add_special_tokens=False))

    def _completion_prompt(self, lm: Any, req: Request) -> str:
        """FIM when the model has FIM tokens, else a prefix continuation; trimmed to budget."""
        from dataclasses import replace

        from ..inline import context_at, prompt_for_local

        tok = lm.tokenizer
        ctx = context_at(req.prefix + req.suffix, len(req.prefix), language=req.language)
        return prompt_for_local(
            _special_tokens(tok),
            lambda s: len(tok.encode(s, add_special_tokens=False)),
            replace(ctx, header=req.header),
            self.inline_cfg.context_tokens,
        )

    # --- shutdown ---------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop the generation thread; MLX aborts at exit if it is still alive."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _special_tokens(tokenizer: Any) -> list[str]:
    """Special / added tokens of an HF tokenizer, where FIM markers live."""
    inner = getattr(tokenizer, "_tokenizer", tokenizer)
    names = set(getattr(inner, "all_special_tokens", []) or [])
    added = getattr(inner, "get_added_vocab", None)
    if added:
        names.update(added())
    return sorted(names)
