"""Work the batch engine holds outside mlx-lm's batch: background jobs set aside while
interactive ones run, and prefill-only jobs (issue #17 item 6).

A `Parked` job keeps its KV cache and every token it knows (prompt plus what it generated), so
it resumes exactly where it stopped: a greedy answer comes out the same, token for token. A
`Prefill` feeds a prompt into its KV cache a chunk at a time and makes no token.
`Priorities` is the batch engine's scheduling of them. Everything runs on the MLX thread that
owns the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..types import Done


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
    """The batch engine's priority scheduling (mixed into batching.BatchEngine, whose state it
    reads: `_jobs` in mlx-lm's batch, the speculating `_lone`, `_parked`, `_prefills`)."""

    PREFILL_STEP: int
    _jobs: dict[int, Any]
    _lone: tuple[Any, Any] | None
    _parked: list[Parked]
    _prefills: list[Prefill]
    _gen: Any
    lm: Any
    preempted: int

    def _interactive(self) -> bool:
        """Whether interactive work is admitted (it holds background work back)."""
        lone = self._lone is not None and not self._lone[0].background
        prefill = any(not p.job.background for p in self._prefills)
        return lone or prefill or any(not j.background for j in self._jobs.values())

    def _schedule(self) -> bool:
        """Set background work aside while interactive work is there, resume it when there is
        none. Returns whether this step runs background work."""
        if self._interactive():
            self._preempt()
            return False
        if self._parked:
            parked, self._parked = self._parked, []
            for p in parked:
                alone = len(parked) == 1
                self._start(p.job, p.cache, p.tokens or p.job.tokens, p.fed, alone)
        return self._busy()

    def _preempt(self, share: bool = False) -> None:
        """Take background work out of the batch. With `share` (an interactive job is about to
        look into the prompt cache), copy the KV that background work has made so far into
        it: a warm-up cut short still serves the request that cut it."""
        start = len(self._parked)
        if self._lone is not None and self._lone[0].background:
            job, dec = self._lone
            self._lone = None
            self._parked.append(Parked(job, dec.cache, dec.tokens, dec.fed))
            self.preempted += 1
        uids = [uid for uid, job in self._jobs.items() if job.background]
        if uids:
            caches = self._gen.remove(uids, return_prompt_caches=True)
            for uid in uids:
                job = self._jobs.pop(uid)
                job.uid = None
                self._parked.append(parked_from_batch(job, *caches[uid]))
            self.preempted += len(uids)
        if share:
            for p in self._parked[start:]:
                self._share(p.tokens[: p.fed], p.cache)  # type: ignore[index, arg-type]
            for pf in self._prefills:
                if pf.fed > pf.shared:
                    self._share(pf.job.tokens[: pf.fed], pf.cache)
                    pf.shared = pf.fed

    def _share(self, tokens: list[int], cache: list[Any]) -> None:
        if tokens:  # a copy: the original goes on growing when the work resumes
            self._keep(tokens, copy.deepcopy(cache))

    def _prefill_step(self) -> None:
        """One chunk of the first interactive prefill-only job, else of the first background
        one while no interactive work is there; a finished one leaves its KV in the prompt
        cache and ends."""
        head = next((p for p in self._prefills if not p.job.background), None)
        if head is None and not self._interactive():
            head = self._prefills[0]
        if head is None:
            return
        head.step(self.lm.model, self.PREFILL_STEP)
        head.job.prefilled = head.fed
        if head.done:
            self._prefills.remove(head)
            self._keep(head.job.tokens, head.cache)
            job = head.job
            job.emit(Done("length", len(job.tokens), 0, self.lm.name))

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
                if over and not job.cancelled.is_set():
                    self._finish(job, "length")
        for pf in [pf for pf in self._prefills if pf.job.cancelled.is_set()]:
            self._prefills.remove(pf)
            self._keep(pf.job.tokens[: pf.fed], pf.cache)
