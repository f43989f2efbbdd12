"""Continuous batching for one loaded model: every request decodes in one shared batch.

Requests arrive from the event loop at any time; a scheduler loop on the MLX thread inserts
them into mlx-lm's BatchGenerator mid-flight, steps the batch one token at a time, streams each
sequence's text back through its own queue, and removes a cancelled sequence before the next
step. Prompt prefixes are reused from a byte-bounded KV cache (mlx-lm's LRUPromptCache), also
for requests that were cancelled part-way: their cache is kept up to where they stopped.

A greedy request that has the model to itself decodes with prompt-lookup speculation, or with
its draft model's drafts (models/speculative.py: same tokens, fewer forward passes); when
another request arrives it joins the batch with its KV cache, losing and repeating nothing.

Priorities (models/ranks.py): inline requests, then streams (chat, complete), then background
work (issue #17 item 6). An arrival takes lower-ranked work out of the batch (its KV cache kept,
see models/background.py) before the next step, and that work resumes where it stopped once
the higher-ranked work is done; a stream waits no longer than the inline request's deadline.
Prompts prefill PREFILL_STEP tokens per step, so an arrival waits at most one chunk. A job with max_tokens == 0 only prefills: its prompt's KV goes to the prompt
cache and it ends with Done("length", prompt tokens, 0, model).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any

from ..errors import ModelError
from .background import Parked, Prefill, Priorities
from .detokenize import TextStream
from .draft_model import DraftRate, drafter_for
from .job import Job
from .speculative import DraftPolicy, LookupDecoder, Stats, can_speculate
from .stops import StopMatcher

log = logging.getLogger(__name__)


class BatchEngine(Priorities):
    """The scheduler for one model. `submit` is called on the event loop; everything else
    runs on the pool's single MLX thread."""

    # Prompt tokens per scheduler step: a cancel or an interactive arrival waits one chunk at
    # most (64 tokens of the embedded model take ~0.1 s on two busy CPU cores).
    PREFILL_STEP = 64
    SLICE_S = 0.05  # longest hold on the MLX thread before letting queued work run
    WAIT_S = 0.002  # a pause of the loop while nothing may run (instead of spinning)

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
        self._expected: list[Job] = []  # marks of inline requests on their way (expect)
        self._running = False
        self._jobs: dict[int, Job] = {}
        self._gen: Any = None
        self.speculative = speculative  # "auto" | "off"
        self.draft_tokens = draft_tokens
        self._lone: tuple[Job, LookupDecoder] | None = None  # the speculating job
        self.spec = Stats()  # prompt-lookup totals, for status and benchmarks
        # Learned across this model's requests.
        self.drafts = DraftPolicy.here(draft_tokens, shadowed=lm.shadows is not None)
        self.draft_rates: dict[str, DraftRate] = {}  # by draft model (its spec)
        self.joined = 0  # speculating jobs that moved into the batch
        self.generations = 0  # requests that reached the model
        self.cached_tokens = 0  # prompt tokens served from the KV cache (reuse)
        self.prompt_tokens = 0  # prompt tokens of the requests that reached the model
        self.kept: deque[list[int]] = deque(maxlen=8)  # sequences last kept in self.cache
        self._parked: list[Parked] = []  # background jobs waiting for interactive ones
        self._prefills: list[Prefill] = []  # prefill-only jobs, first come first served
        self.background_steps = 0  # scheduler steps that ran background work
        self.preempted = 0  # background jobs set aside for an interactive one
        self.paused = 0  # streams (chat, complete) paused for inline requests

    @property
    def active(self) -> int:
        with self._lock:
            held = len(self._parked) + len(self._prefills) + (self._lone is not None)
            return len(self._jobs) + len(self._incoming) + held

    def submit(self, job: Job) -> None:
        with self._lock:
            job.submitted_at = self.background_steps
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
                    if not incoming and not self._busy():
                        self._running = False  # the generator stays: rebuilding it costs ms
                        return
                # Cancelled first: a request arriving with the cancel then finds its KV cache.
                self._drop_cancelled()
                self._admit(incoming)
                background = self._schedule()
                if self._lone is not None and self._jobs:
                    self._join_batch()  # no longer alone: continue in the batch
                ran = self._lone is not None or bool(self._jobs)
                if self._lone is not None:
                    self._lone_step()
                elif self._jobs:
                    self._step()
                if self._prefills:
                    ran = self._prefill_step() or ran
                if not ran:  # all that is here waits for an inline request on its way
                    time.sleep(self.WAIT_S)
                if background:
                    with self._lock:
                        self.background_steps += 1
        except BaseException as exc:  # an MLX failure must reach every waiting request
            log.exception("batch generation failed")
            err = ModelError(f"generation failed: {type(exc).__name__}: {exc}")
            with self._lock:
                jobs = list(self._jobs.values()) + self._incoming
                jobs += [self._lone[0]] if self._lone is not None else []
                jobs += [p.job for p in self._parked] + [p.job for p in self._prefills]
                self._lone = None
                self._jobs.clear()
                self._incoming, self._parked, self._prefills = [], [], []
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

    def _busy(self) -> bool:
        return bool(self._jobs or self._lone or self._parked or self._prefills)

    def _fetch(self, job: Job) -> tuple[list[Any], int]:
        """The nearest KV cache for the job's prompt, and how many of its tokens it holds
        (a job that decodes recomputes the last one for fresh logits: not counted reused)."""
        from mlx_lm.models.cache import make_prompt_cache

        cache, rest = self.cache.fetch_nearest_cache(self.lm.name, job.tokens)
        if cache is None:
            cache = make_prompt_cache(self.lm.model)
        held = len(job.tokens) - len(rest)
        job.reused = min(held, len(job.tokens) - 1) if job.max_tokens > 0 else held
        job.prefilled = job.reused
        job.started = time.monotonic()
        self.cached_tokens += job.reused
        self.prompt_tokens += len(job.tokens)
        self.generations += 1
        return cache, held

    def _start(
        self, job: Job, cache: list[Any] | None, tokens: list[int], fed: int, alone: bool
    ) -> None:
        """Decode `job` on from `cache` (the KV of `tokens[:fed]`; None: from the prompt
        cache), speculating when it has the model to itself."""
        from mlx_lm.models.cache import trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        if cache is None:
            cache, fed = self._fetch(job)
        if fed >= len(tokens):  # all held: recompute the last position for fresh logits
            trim_prompt_cache(cache, fed - len(tokens) + 1)
            fed = len(tokens) - 1
        if job.detokenizer is None:
            job.detokenizer = TextStream(self.lm.tokenizer, job.tokens)
            job.matcher = StopMatcher(job.stop)
        alone = alone and not self._jobs and self._lone is None
        if alone and self._may_speculate(job, cache):
            self.drafts.max_draft = self.drafts.most(self.draft_tokens)  # the config may change
            dec = LookupDecoder(
                self.lm.model, cache, tokens, fed, self.draft_tokens, self.spec, self.drafts
            )
            dec.healer, dec.drafter = job.healer, drafter_for(job, self.draft_rates)
            self._lone = (job, dec)
            return
        (job.uid,) = self._generator().insert(
            [tokens[fed:]],
            max_tokens=[job.max_tokens - job.generated],
            caches=[cache],
            all_tokens=[tokens[:fed]],
            samplers=[make_sampler(temp=job.temperature)],
            logits_processors=[[job.healer] if job.healer is not None else []],
        )
        self._jobs[job.uid] = job

    def _may_speculate(self, job: Job, cache: list[Any]) -> bool:
        return self.speculative != "off" and job.temperature == 0 and can_speculate(cache)

    def _join_batch(self) -> None:
        """The speculating job continues in the batch from where it is: its cache, the
        tokens not yet fed (the last generated one, or the prompt's rest), greedy."""
        job, dec = self._lone  # type: ignore[misc]
        self._lone = None
        self.joined += 1
        self._start(job, dec.cache, dec.tokens, dec.fed, alone=False)

    def _first_token(self, job: Job) -> None:
        job.generated += 1
        if job.waited is None:
            job.waited = self.background_steps - job.submitted_at
            job.held_first_s = job.held_s

    def _lone_step(self) -> None:
        job, dec = self._lone  # type: ignore[misc]
        if dec.prefilling:
            dec.prefill(self.PREFILL_STEP)  # a cancel or a newcomer waits one chunk at most
            job.prefilled = dec.fed
            return
        eos = self.lm.tokenizer.eos_token_ids
        for token in dec.step(job.max_tokens - job.generated):
            self._first_token(job)
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
        self._drop_waiting(now)

    def _remove(self, uid: int, job: Job, finish: str | None) -> None:
        """Take a sequence out of the batch; keep its KV cache for the next request."""
        caches = self._gen.remove([uid], return_prompt_caches=True)
        del self._jobs[uid]
        if uid in caches:
            cache, tokens = caches[uid]
            self._keep(list(tokens), cache)
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
        self.kept.append(tokens[:held])

    def _step(self) -> None:
        eos = self.lm.tokenizer.eos_token_ids
        prompts, responses = self._gen.next()
        for p in prompts:  # progress: (prompt tokens fed, of those it had to feed)
            if (job := self._jobs.get(p.uid)) is not None:
                job.prefilled = job.reused + p.progress[0]
        for r in responses:
            job = self._jobs.get(r.uid)
            if job is None:
                continue
            self._first_token(job)
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
        job.send(segment)

    def _finish(self, job: Job, reason: str | None) -> None:
        job.finish(reason, self.lm.name)
