"""Work the batch engine holds outside mlx-lm's batch: jobs set aside while higher-ranked ones
run (background work while interactive work runs, issue #17 item 6; a chat while an inline
request runs, issue #19: models/ranks.py), and prefill-only jobs.

A `Parked` job keeps its KV cache and every token it knows (prompt plus what it generated), so
it resumes exactly where it stopped: a greedy answer comes out the same, token for token. A
`Prefill` feeds a prompt into its KV cache a chunk at a time and makes no token.
`Priorities` is the batch engine's scheduling of them. Everything runs on the MLX thread that
owns the model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from ..types import Done, Held
from .job import Job
from .ranks import BACKGROUND, may_resume, must_wait, pause, pause_end, rank, resume, top_rank


@dataclass(eq=False)
class Parked:
    """A job waiting for the model: `cache` holds the KV of `tokens[:fed]` (None: not started
    yet, its cache comes from the prompt cache when it starts)."""

    job: Any  # batching.Job
    cache: list[Any] | None = None
    tokens: list[int] | None = None
    fed: int = 0


def parked_from_batch(job: Any, cache: list[Any], kv_tokens: list[int]) -> Parked:
    """A job taken out of mlx-lm's batch, with what `BatchGenerator.remove` returned: its KV
    cache and the tokens in it. While it prefills they are a prefix of its prompt; once it
    decodes they are the prompt plus every token it generated (each was fed back)."""
    kv = list(kv_tokens)
    tokens = kv if len(kv) >= len(job.tokens) else list(job.tokens)
    return Parked(job, cache, tokens, len(kv))


@dataclass(eq=False)
class Prefill:
    """A prefill-only job (max_tokens == 0): `cache` holds the KV of `job.tokens[:fed]`."""

    job: Any  # batching.Job
    cache: list[Any]
    fed: int
    shared: int = 0  # tokens of it last copied to the prompt cache

    @property
    def done(self) -> bool:
        return self.fed >= len(self.job.tokens)

    def step(self, model: Any, n: int) -> None:
        """Feed the next `n` prompt tokens at most (one forward pass)."""
        import mlx.core as mx

        chunk = self.job.tokens[self.fed : self.fed + n]
        if chunk:
            model(mx.array(chunk)[None], cache=self.cache)
            mx.eval([c.state for c in self.cache])
            self.fed += len(chunk)


class Priorities:
    """The batch engine's scheduling by rank (models/ranks.py; mixed into
    batching.BatchEngine, whose state it reads: `_jobs` in mlx-lm's batch, the speculating
    `_lone`, `_parked`, `_prefills`)."""

    PREFILL_STEP: int
    _jobs: dict[int, Any]
    _lone: tuple[Any, Any] | None
    _parked: list[Parked]
    _prefills: list[Prefill]
    _gen: Any
    lm: Any
    preempted: int
    paused: int
    _expected: list[Any]
    _lock: Any

    def expect(self, deadline: float | None) -> Any:
        """An inline request on its way, its prompt still being built off the MLX thread:
        streams pause for it already, so that building it does not compete with their
        decoding for the cores. Returns a mark (a job that never runs): hand it to the
        request's job (`Job.mark`: it is dropped when that job is admitted, in the same step),
        or set its `cancelled` when there will be none. Called on the event loop."""
        mark = Job(tokens=[], max_tokens=0, temperature=0.0, stop=[], emit=print, inline=True)
        mark.deadline = deadline
        with self._lock:  # a new list: the MLX thread reads the old one or this one
            self._expected = [j for j in self._expected if not j.cancelled.is_set()] + [mark]
        return mark

    def _work(self) -> list[Any]:
        """Every job the engine holds: running, waiting, prefill-only, and the inline requests
        on their way."""
        jobs = list(self._jobs.values()) + [p.job for p in self._parked]
        jobs += [p.job for p in self._prefills] + self._expected
        return jobs + ([self._lone[0]] if self._lone is not None else [])

    def _admit(self, jobs: list[Any]) -> None:
        """New jobs: a prefill-only one joins the prefill queue, the rest wait to be started by
        `_schedule` (at once unless higher-ranked work is there). Lower-ranked work leaves the
        batch first, its KV shared with the prompt cache the newcomers look into."""
        live = [job for job in jobs if not job.cancelled.is_set()]  # cancelled: never run
        self._parked += [Parked(job) for job in live if job.max_tokens > 0]
        for job in [j for j in jobs if j.mark is not None]:  # in the same step: no gap
            job.mark.cancelled.set()
        now = time.monotonic()
        self._park(top_rank(self._work() + live, now), now)
        if any(not job.background for job in live):
            for pf in self._prefills:  # a warm-up cut short still serves the request that cut it
                if pf.fed > pf.shared:
                    self._share(pf.job.tokens[: pf.fed], pf.cache)
                    pf.shared = pf.fed
        for job in [j for j in live if j.max_tokens <= 0]:
            cache, fed = self._fetch(job)
            self._prefills.append(Prefill(job, cache, fed))

    def _schedule(self) -> bool:
        """Set aside the work that must wait for higher-ranked work, run again what may.
        Returns whether this step runs background work."""
        now = time.monotonic()
        top = top_rank(self._work(), now)
        self._park(top, now)
        ready = [p for p in self._parked if may_resume(p.job, top, now)]
        if ready:
            self._parked = [p for p in self._parked if p not in ready]
            for p in ready:
                resume(p.job, now)
                alone = len(ready) == 1
                self._start(p.job, p.cache, p.tokens or p.job.tokens, p.fed, alone)
        return top == BACKGROUND

    def _park(self, top: int, now: float) -> None:
        """Take the work that must wait out of the batch, its KV cache kept. Background work's
        KV so far goes to the prompt cache too (a warm-up cut short still serves the request
        that cut it); a stream is paused (ranks.pause) and told so (Held)."""
        start = len(self._parked)
        if self._lone is not None and must_wait(self._lone[0], top, now):
            job, dec = self._lone
            self._lone = None
            self._parked.append(Parked(job, dec.cache, dec.tokens, dec.fed))
        uids = [uid for uid, job in self._jobs.items() if must_wait(job, top, now)]
        if uids:
            caches = self._gen.remove(uids, return_prompt_caches=True)
            for uid in uids:
                job = self._jobs.pop(uid)
                job.uid = None
                self._parked.append(parked_from_batch(job, *caches[uid]))
        for p in self._parked[start:]:
            if p.job.background:
                self.preempted += 1
                self._share(p.tokens[: p.fed], p.cache)  # type: ignore[index, arg-type]
        streams = [p.job for p in self._parked if not p.job.background and p.job.paused_at is None]
        streams = [job for job in streams if not may_resume(job, top, now)]
        if streams:  # running ones just set aside, and new ones that wait to start
            ends = pause_end(self._work(), now)
            for job in streams:
                pause(job, ends, now)
                job.emit(Held(ends - now))
            self.paused += len(streams)

    def _share(self, tokens: list[int], cache: list[Any]) -> None:
        if tokens:  # a copy: the original goes on growing when the work resumes
            self._keep(tokens, copy.deepcopy(cache))

    def _prefill_step(self) -> bool:
        """One chunk of the first prefill-only job of the highest rank, while no work of a
        higher rank is there; a finished one leaves its KV in the prompt cache and ends.
        Returns whether it ran one."""
        now = time.monotonic()
        head = max(self._prefills, key=lambda p: rank(p.job, now))  # the first of the top rank
        if rank(head.job, now) < top_rank(self._work(), now):
            return False
        head.step(self.lm.model, self.PREFILL_STEP)
        head.job.prefilled = head.fed
        if head.done:
            self._prefills.remove(head)
            self._keep(head.job.tokens, head.cache)
            job = head.job
            job.emit(Done("length", len(job.tokens), 0, self.lm.name))
        return True

    def _drop_waiting(self, now: float) -> None:
        """Parked and prefill-only jobs that were cancelled (their KV kept for reuse) or
        whose deadline passed with text made (they end with it)."""
        for p in list(self._parked):
            job = p.job
            over = job.deadline is not None and now >= job.deadline and job.generated
            if job.cancelled.is_set() or over:
                self._parked.remove(p)
                if p.cache is not None and p.tokens is not None:
                    self._keep(p.tokens[: p.fed], p.cache)
                self._finish(job, None if job.cancelled.is_set() else "length")
        for pf in [pf for pf in self._prefills if pf.job.cancelled.is_set()]:
            self._prefills.remove(pf)
            self._keep(pf.job.tokens[: pf.fed], pf.cache)
