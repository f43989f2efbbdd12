"""Continuous batching for one loaded model: every request decodes in one shared batch.

Requests arrive from the event loop at any time; a scheduler loop on the MLX thread inserts
them into mlx-lm's BatchGenerator mid-flight, steps the batch one token at a time, streams each
sequence's text back through its own queue, and removes a cancelled sequence before the next
step. Prompt prefixes are reused from a byte-bounded KV cache (mlx-lm's LRUPromptCache), also
for requests that were cancelled part-way: their cache is kept up to where they stopped.

A greedy request that has the model to itself decodes with prompt-lookup speculation
(models/speculative.py: same tokens, fewer forward passes); when another request arrives it
joins the batch with its KV cache, losing and repeating nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError
from ..types import Delta, Done
from .detokenize import TextStream
from .speculative import LookupDecoder, Stats, can_speculate
from .stops import StopMatcher

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]  # Delta | Done | BaseException, delivered on the event loop


@dataclass(eq=False)
class Job:
    """One request's state on the MLX thread."""

    tokens: list[int]  # the whole prompt
    max_tokens: int
    temperature: float
    stop: list[str]
    emit: Emit
    # Token ids that end the answer like EOS (a FIM template's end tokens): never in the text,
    # counted in the usage.
    stop_tokens: frozenset[int] = frozenset()
    deadline: float | None = None  # monotonic; finish with what there is after it
    cancelled: threading.Event = field(default_factory=threading.Event)
    uid: int | None = None
    detokenizer: TextStream | None = None
    matcher: StopMatcher | None = None
    generated: int = 0
    reused: int = 0  # prompt tokens found in the KV cache (set when admitted)


class BatchEngine:
    """The scheduler for one model. `submit` is called on the event loop; everything else
    runs on the pool's single MLX thread."""

    PREFILL_STEP = 512  # prompt chunk per scheduler step: a cancel waits at most one chunk
    SLICE_S = 0.05  # longest hold on the MLX thread before letting queued work run

    def __init__(
        self,
        lm: Any,
        executor: Executor,
        cache_bytes: int,
        *,
        speculative: str = "auto",
        draft_tokens: int = 8,
    ) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self.lm = lm
        self.executor = executor
        self.cache = LRUPromptCache(max_size=32, max_bytes=cache_bytes)
        self._lock = threading.Lock()
        self._incoming: list[Job] = []
        self._running = False
        self._jobs: dict[int, Job] = {}
        self._gen: Any = None
        self.speculative = speculative  # "auto" | "off"
        self.draft_tokens = draft_tokens
        self._lone: tuple[Job, LookupDecoder] | None = None  # the speculating job
        self.spec = Stats()  # prompt-lookup totals, for status and benchmarks
        self.joined = 0  # speculating jobs that moved into the batch
        self.generations = 0  # requests that reached the model
        self.cached_tokens = 0  # prompt tokens served from the KV cache (reuse)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._jobs) + len(self._incoming) + (self._lone is not None)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._incoming.append(job)
            start = not self._running
            self._running = True
        if start:
            self.executor.submit(self._loop)

    # --- the MLX thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        # Yield the shared MLX thread now and then, so loads and other models' batches
        # interleave with a long generation instead of waiting for its end.
        yield_at = time.monotonic() + self.SLICE_S
        try:
            while True:
                if time.monotonic() >= yield_at:
                    self.executor.submit(self._loop)  # still running: resume after the others
                    return
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    if not incoming and not self._jobs and self._lone is None:
                        self._running = False  # the generator stays: rebuilding it costs ms
                        return
                # Cancelled first: a request arriving with the cancel then finds its KV cache.
                self._drop_cancelled()
                self._admit(incoming)
                if self._lone is not None and self._jobs:
                    self._join_batch()  # no longer alone: continue in the batch
                if self._lone is not None:
                    self._lone_step()
                elif self._jobs:
                    self._step()
        except BaseException as exc:  # an MLX failure must reach every waiting request
            log.exception("batch generation failed")
            err = ModelError(f"generation failed: {type(exc).__name__}: {exc}")
            with self._lock:
                jobs = list(self._jobs.values()) + self._incoming
                jobs += [self._lone[0]] if self._lone is not None else []
                self._lone = None
                self._jobs.clear()
                self._incoming = []
                self._running = False
            self._gen = None
            for job in jobs:
                job.emit(err)

    def _generator(self) -> Any:
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator

        if self._gen is None:
            eos = [[t] for t in self.lm.tokenizer.eos_token_ids]
            self._gen = BatchGenerator(
                self.lm.model,
                stop_tokens=eos,
                prefill_step_size=self.PREFILL_STEP,
                # mlx-lm's module-level stream is thread-local state; this thread's default
                # stream is what mlx_lm.server uses too.
                stream=mx.default_stream(mx.default_device()),
            )
        return self._gen

    def close(self) -> None:
        """On the MLX thread, when the model is unloaded."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def _admit(self, jobs: list[Job]) -> None:
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        live = [job for job in jobs if not job.cancelled.is_set()]  # cancelled: never run
        for job in live:
            cache, rest = self.cache.fetch_nearest_cache(self.lm.name, job.tokens)
            if cache is None:
                cache = make_prompt_cache(self.lm.model)
            if not rest:  # exact hit: recompute the last position for fresh logits
                trim_prompt_cache(cache, 1)
                rest = job.tokens[-1:]
            reused = job.reused = len(job.tokens) - len(rest)
            self.cached_tokens += reused
            self.generations += 1
            if self._may_speculate(job, cache, len(live)):
                self._lone = (
                    job,
                    LookupDecoder(
                        self.lm.model, cache, job.tokens, reused, self.draft_tokens, self.spec
                    ),
                )
                job.detokenizer = TextStream(self.lm.tokenizer, job.tokens)
                job.matcher = StopMatcher(job.stop)
                continue
            (job.uid,) = self._generator().insert(
                [rest],
                max_tokens=[job.max_tokens],
                caches=[cache],
                all_tokens=[job.tokens[:reused]],
                samplers=[make_sampler(temp=job.temperature)],
            )
            job.detokenizer = TextStream(self.lm.tokenizer, job.tokens)
            job.matcher = StopMatcher(job.stop)
            self._jobs[job.uid] = job

    def _may_speculate(self, job: Job, cache: list[Any], arriving: int) -> bool:
        alone = arriving == 1 and not self._jobs and self._lone is None
        return alone and self.speculative != "off" and job.temperature == 0 and can_speculate(cache)

    def _join_batch(self) -> None:
        """The speculating job continues in the batch from where it is: its cache, the
        tokens not yet fed (the last generated one, or the prompt's rest), greedy."""
        from mlx_lm.sample_utils import make_sampler

        job, dec = self._lone  # type: ignore[misc]
        self._lone = None
        self.joined += 1
        (job.uid,) = self._generator().insert(
            [dec.tokens[dec.fed :]],
            max_tokens=[job.max_tokens - job.generated],
            caches=[dec.cache],
            all_tokens=[dec.tokens[: dec.fed]],
            samplers=[make_sampler(temp=job.temperature)],
        )
        self._jobs[job.uid] = job

    def _lone_step(self) -> None:
        job, dec = self._lone  # type: ignore[misc]
        if dec.prefilling:
            dec.prefill(self.PREFILL_STEP)  # a cancel or a newcomer waits one chunk at most
            return
        eos = self.lm.tokenizer.eos_token_ids
        for token in dec.step(job.max_tokens - job.generated):
            job.generated += 1
            ended = token in eos or token in job.stop_tokens  # a FIM end token: like EOS
            last = ended or job.generated >= job.max_tokens
            self._send(job, self._piece(job, token, last, ended))
            if job.matcher.stopped or last:
                self._end_lone("stop" if ended or job.matcher.stopped else "length")
                return

    def _piece(self, job: Job, token: int, last: bool, ended: bool) -> str:
        segment = job.detokenizer.add(token) if not ended else ""
        if last:
            segment += job.detokenizer.finish()
        return segment

    def _end_lone(self, finish: str | None) -> None:
        job, dec = self._lone  # type: ignore[misc]
        self._lone = None
        self._keep(dec.tokens[: len(job.tokens) + job.generated], dec.cache)
        if finish is not None:
            self._finish(job, finish)

    def _drop_cancelled(self) -> None:
        now = time.monotonic()
        if self._lone is not None:
            job = self._lone[0]
            if job.cancelled.is_set():
                self._end_lone(None)
            elif job.deadline is not None and now >= job.deadline and job.generated:
                self._end_lone("length")
        for uid, job in list(self._jobs.items()):
            if job.cancelled.is_set():
                self._remove(uid, job, None)
            elif job.deadline is not None and now >= job.deadline and job.generated:
                self._remove(uid, job, "length")

    def _remove(self, uid: int, job: Job, finish: str | None) -> None:
        """Take a sequence out of the batch; keep its KV cache for the next request."""
        caches = self._gen.remove([uid], return_prompt_caches=True)
        del self._jobs[uid]
        if uid in caches:
            cache, tokens = caches[uid]
            self._keep(list(tokens), cache)
        if finish is not None:
            self._finish(job, finish)

    def _keep(self, tokens: list[int], cache: list[Any]) -> None:
        from mlx_lm.models.cache import trim_prompt_cache

        held = getattr(cache[0], "offset", len(tokens)) if cache else 0
        if held <= 0:
            return
        if held > len(tokens):
            trim_prompt_cache(cache, held - len(tokens))
            held = len(tokens)
        self.cache.insert_cache(self.lm.name, tokens[:held], cache)

    def _step(self) -> None:
        eos = self.lm.tokenizer.eos_token_ids
        _, responses = self._gen.next()
        for r in responses:
            job = self._jobs.get(r.uid)
            if job is None:
                continue
            job.generated += 1
            ended = r.token in job.stop_tokens  # a FIM end token: a real stop, like EOS
            segment = job.detokenizer.add(r.token) if r.token not in eos and not ended else ""
            if r.finish_reason is not None or ended:
                segment += job.detokenizer.finish()
            self._send(job, segment)
            if job.matcher.stopped or ended:
                if r.finish_reason is None:
                    self._remove(r.uid, job, "stop")
                else:
                    del self._jobs[r.uid]
                    self._keep(list(r.all_tokens), r.prompt_cache)
                    self._finish(job, "stop")
            elif r.finish_reason is not None:
                del self._jobs[r.uid]
                self._keep(list(r.all_tokens), r.prompt_cache)
                self._finish(job, "stop" if r.finish_reason == "stop" else "length")

    def _send(self, job: Job, segment: str) -> None:
        if segment and (text := job.matcher.feed(segment)):
            job.emit(Delta(text))

    def _finish(self, job: Job, reason: str) -> None:
        # Tokens held for a partial character (a cut mid-way) go out, less that character.
        held = job.detokenizer.finish() if job.detokenizer is not None else ""
        if tail := job.matcher.feed(held) + job.matcher.flush():
            job.emit(Delta(tail))
        job.emit(Done(reason, len(job.tokens), job.generated, self.lm.name))  # type: ignore[arg-type]
