"""Work the batch engine holds outside mlx-lm's batch: background jobs set aside while
interactive ones run, and prefill-only jobs (issue #17 item 6).

A `Parked` job keeps its KV cache and every token it knows (prompt plus what it generated), so
it resumes exactly where it stopped: a greedy answer comes out the same, token for token. A
`Prefill` feeds a prompt into its KV cache a chunk at a time and makes no token. Runs on the
MLX thread that owns the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
