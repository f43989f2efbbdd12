"""Drafts from a draft model (local draft_model) for the lossless verify pass of
speculative.LookupDecoder: mlx-lm's speculative decoding, the draft model greedy-decoding a few
tokens from its own KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .budget import common_prefix
from .job import Job
from .speculative import can_speculate


def drafter_for(job: Job, rates: dict[str, DraftRate]) -> ModelDrafter | None:
    """A drafter from the job's draft model (None: none, or one whose cache cannot be trimmed),
    with the acceptance learned for that draft model so far (`rates`, by its spec)."""
    if job.draft is None:
        return None
    drafter = ModelDrafter(job.draft.model, rates.setdefault(job.draft.name, DraftRate()))
    return drafter if drafter.usable else None


@dataclass
class DraftRate:
    """How often one draft model's tokens are accepted (EMA, optimistic prior), learned across
    requests: a draft that seldom agrees with the model (another family, a random one) costs
    its draft passes and a longer verify pass for nothing, so it only probes now and then."""

    p: float = 0.8
    skipped: int = 0

    PROBE_EVERY = 10  # steps between one-token probes of a draft that does not pay
    PAYS = 0.5  # acceptance at which a full draft is made
    # Weight of the newest outcome: a draft model's passes cost more than a lookup's, so it
    # backs off after fewer failures (prompt lookup's EMA is steadier, speculative.EMA).
    EMA = 0.2

    def length(self, k: int) -> int:
        """Draft tokens to make now, at most `k` (0: none may be made, e.g. while healing)."""
        if k <= 0 or self.p >= self.PAYS:
            return max(0, k)
        self.skipped += 1
        return 1 if self.skipped % self.PROBE_EVERY == 0 else 0

    def update(self, drafted: int, accepted: int) -> None:
        for x in [1.0] * accepted + ([0.0] if accepted < drafted else []):
            self.p += self.EMA * (x - self.p)


class ModelDrafter:
    """Drafts from a small model of the target's vocabulary, as mlx-lm's
    speculative_generate_step does: the draft model decodes k tokens greedily from its own KV
    cache, which follows the target's sequence (trimmed back to the common prefix before each
    draft, so rejected draft tokens leave it). Its cache catches up with the prompt in chunks
    (`prefill`), like the target's, so a newcomer waits one chunk at most. Runs on the MLX
    thread."""

    LENGTH = 3  # tokens per draft (mlx_lm.server's --num-draft-tokens), at most draft_tokens

    def __init__(self, model: Any, rate: DraftRate | None = None) -> None:
        from mlx_lm.models.cache import make_prompt_cache

        self.model = model
        self.cache = make_prompt_cache(model)
        self.held: list[int] = []  # the tokens whose KV the draft cache holds
        self.rate = rate if rate is not None else DraftRate()

    @property
    def usable(self) -> bool:
        """Rejected draft tokens must leave its cache: a rotating or state-space one cannot."""
        return can_speculate(self.cache)

    def behind(self, tokens: list[int]) -> bool:
        """Whether the draft cache lacks some of the prompt `tokens` but the last."""
        return len(self.held) < len(tokens) - 1

    def prefill(self, tokens: list[int], n: int) -> None:
        """Feed the draft model up to `n` more of `tokens` but the last."""
        import mlx.core as mx

        self._sync(tokens)
        chunk = tokens[len(self.held) : min(len(self.held) + n, len(tokens) - 1)]
        if chunk:
            self.model(mx.array(chunk)[None], cache=self.cache)
            mx.eval([c.state for c in self.cache])
            self.held += chunk

    def draft(self, tokens: list[int], k: int) -> list[int]:
        """Up to `k` greedy draft tokens following `tokens` (the target's sequence, its last
        token not yet verified)."""
        import mlx.core as mx

        if k <= 0:
            return []
        self._sync(tokens)
        feed = tokens[len(self.held) :]
        out: list[int] = []
        for _ in range(k):
            logits = self.model(mx.array(feed)[None], cache=self.cache)[0, -1]
            self.held += feed
            token = int(mx.argmax(logits).item())
            out.append(token)
            feed = [token]
        return out  # the last one is not fed: the target's pass verifies it first

    def _sync(self, tokens: list[int]) -> None:
        """Trim the draft cache back to what it shares with `tokens` but the last."""
        from mlx_lm.models.cache import trim_prompt_cache

        same = common_prefix(self.held, tokens[:-1])
        if len(self.held) > same:
            trim_prompt_cache(self.cache, len(self.held) - same)
            del self.held[same:]
