"""Lossless speculative decoding by prompt lookup, for one greedy sequence (pure MLX + mlx-lm).

Code repeats itself: the tokens that followed the latest earlier occurrence of the last few
tokens (in the prompt or in what was generated) are a cheap draft of what comes next. One
forward pass verifies the whole draft (feeding k+1 tokens costs far less than k+1 passes: the
weights are read once); the longest prefix the model agrees with under greedy decoding is kept,
plus the model's own next token, and the KV cache positions of rejected draft tokens are
trimmed. The output is the greedy output, token for token: with mlxd's few-row products
(gemv_forward.py) a row of the verify pass is bit-identical to the same token fed alone; on
a BLAS that sums rows in another order, up to logits that tie within float32 rounding.

The draft length adapts: each n-gram length keeps an estimate of how often its drafts are
accepted, and a draft is only made when its expected gain beats its verification cost, so
plain text (few useful matches) decodes at the plain speed.

With a draft model (`draft_model` on a local model's config: a small model of the same
vocabulary), the draft comes from it instead (draft_model.py); the verification, and so the
output, is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import gemv_forward

# Longest suffix looked up: a longer match is a more specific context. Replayed offline on
# the greedy texts of `bench speculation`'s 6 code prompts and of 10 held-out ones from other
# packages (session 18): 3 -> 5 made 1.17x and 1.10x the tokens a pass.
MAX_NGRAM = 5
VERIFY_COST = 0.15  # extra cost of one more token in a forward pass, relative to a plain step
# Extra cost of any pass with a draft when mlxd's few-row products are preloaded
# (gemv_forward.py). Embedded model, 2 x86 cores: a pass of 2 tokens cost ~1.15x a plain step,
# of 9 tokens ~2.3x (with sgemv for one row and sgemm for more: 1.7x and 2.6x; on OpenBLAS
# alone 1.2x and 1.9x, the plain step being slower).
FORWARDED_FIXED_COST = 0.2
# With quantized shadows (gemv_forward.shadow) a plain step reads the weights' 4-bit form and is
# ~1.35x faster; a verify pass reads them too (3+ tokens, 4+ on AVX-512, unpack blocks of them into
# L1), and its attention is mlxd's (attention.py: MLX's CPU softmax cost each more token ~13 ms at
# depth 900). Relative to a one-token pass (embedded model, 2 x86 cores, session 20), by tokens in
# the pass: at depth 312, 2 1.22x, 3 1.35x, 5 1.62x, 9 2.31x, 12 2.58x; at depth 957, 2 1.20x, 3
# 1.40x, 5 1.66x, 9 2.20x, 12 2.82x. Replayed on the greedy texts of bench.speculation_replay priced
# by either table, 0.05 + 0.13 a draft token came within 1-2% of pricing by the table itself on
# every set (the previous 0.16 + 0.18: holes 1.39-1.41x, now 1.47-1.50x). Session 22 (each layer
# started early, sums kept in registers; depth 900): 2 1.21x, 3 1.39x, 5 1.75x, 9 2.22x, 12 2.65x;
# priced by that table, holes 1.43x against these constants' 1.45x: kept. Session 24 (an AVX-512
# EPYC, the 2-row tile's reloads gone): 2 1.12x, 3 1.48x, 5 1.77x, 9 2.42x, 12 2.78x; priced by that
# table, holes 1.45x against these constants' 1.43x: kept. (`python -m bench.speculation_replay`
# checks them against this machine's measured costs.)
SHADOWED_FIXED_COST = 0.05
SHADOWED_VERIFY_COST = 0.13
# With the 3-row quantized tile (AVX-512: gemv_forward.shadow_rows() 3), passes of 2-3 tokens
# read the shadows in registers and those of 4+ unpack them into L1: two slopes. Session 24
# (EPYC, depth ~300, load 1.3): 2 1.11x, 3 1.16x | 4 1.57x, 5 1.80x, 6 1.91x, 8 2.18x,
# 10 2.63x, 12 2.95x: 0.05 + 0.05 a draft token in registers, 0.05 + 0.17 beyond (within 4%).
# Replayed, the single slope 0.13 gave holes 1.48x where pricing by the table gave 1.59x.
REGISTER_VERIFY_COST = 0.05
UNPACKED_VERIFY_COST = 0.17
# When drafting does not pay, still draft one token now and then, to re-learn; so rarely that
# a probe that always fails costs plain text at most this share of its speed.
PROBE_OVERHEAD = 0.01
# Weight of the newest acceptance outcome. Replayed (bench.speculation_replay's sets and 36
# multi-line holes, session 19), 0.1 against 0.2: holes 1.51x / 1.45x, held-out code 1.41x /
# 1.36x, prose 1.09x / 1.06x, bench code 1.77x / 1.80x: steadier estimates stop fewer drafts
# that pay after a few failures.
EMA = 0.1
# Per n-gram length n (index), the prior chance that a draft token is accepted.
PRIORS = [0.0, 0.5, 0.7, 0.8] + [0.85] * max(0, MAX_NGRAM - 3)


class PromptLookup:
    """An n-gram index over a growing token list: `draft(k)` proposes the tokens that followed
    the latest earlier occurrence of the longest matching suffix (n = MAX_NGRAM..1)."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        self._index: list[dict[tuple[int, ...], int]] = [{} for _ in range(MAX_NGRAM + 1)]
        self._indexed = 0  # n-grams ending before this position are in the index
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        self.tokens.extend(tokens)
        toks = self.tokens
        # Index every n-gram that ends before the last token: the suffix itself is never
        # its own match.
        for end in range(self._indexed, len(toks) - 1):
            for n in range(1, MAX_NGRAM + 1):
                if end - n + 1 < 0:
                    break
                self._index[n][tuple(toks[end - n + 1 : end + 1])] = end
        self._indexed = max(self._indexed, len(toks) - 1)

    def draft(self, k: int) -> tuple[int, list[int]]:
        """(n-gram length matched, up to k draft tokens); (0, []) without a match."""
        toks = self.tokens
        for n in range(min(MAX_NGRAM, len(toks)), 0, -1):
            end = self._index[n].get(tuple(toks[-n:]))
            if end is not None:
                return n, toks[end + 1 : end + 1 + k]
        return 0, []


@dataclass
class Stats:
    steps: int = 0  # forward passes while decoding
    drafted: int = 0  # draft tokens verified
    accepted: int = 0  # draft tokens kept

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


@dataclass
class DraftPolicy:
    """Per n-gram length, the chance that a draft token is accepted (EMA), and the draft
    length that maximizes tokens per unit of forward-pass cost. One per engine: what it learns
    outlives a request (an inline request decodes 10-20 tokens, too few to learn in). The
    priors are optimistic, so a model whose drafts pay is found out within a few passes even
    where a draft must be likely to pay (`fixed_cost`); failed drafts lower them fast."""

    max_draft: int
    fixed_cost: float = 0.0  # cost of a pass with any draft, over a plain step's
    token_cost: float = VERIFY_COST  # cost of each draft token in a pass, over a plain step's
    # Passes of up to this many tokens cost register_cost a draft token instead (0: none).
    register_rows: int = 0
    register_cost: float = 0.0
    p: list[float] = field(default_factory=lambda: list(PRIORS))
    skipped: int = 0

    @classmethod
    def here(cls, max_draft: int, shadowed: bool = False) -> DraftPolicy:
        """The policy for this process's products (mlxd's few-row products or not; `shadowed`:
        the model's plain steps read quantized shadows). With them, a verify pass keeps to
        their rows (drafts of at most MAX_ROWS - 1 tokens): a longer one would go to OpenBLAS,
        whose rows differ from a plain step's in the last bits, and greedy decoding would no
        longer be exact (`local.draft_tokens` allows 64)."""
        if shadowed and gemv_forward.shadow_rows() >= 3:
            return cls(
                cls.most(max_draft),
                SHADOWED_FIXED_COST,
                UNPACKED_VERIFY_COST,
                register_rows=gemv_forward.shadow_rows(),
                register_cost=REGISTER_VERIFY_COST,
            )
        if shadowed:
            return cls(cls.most(max_draft), SHADOWED_FIXED_COST, SHADOWED_VERIFY_COST)
        return cls(cls.most(max_draft), FORWARDED_FIXED_COST if gemv_forward.mapped() else 0.0)

    @staticmethod
    def most(max_draft: int) -> int:
        """The longest draft this process's products keep exact, up to `max_draft`."""
        return min(max_draft, gemv_forward.MAX_ROWS - 1) if gemv_forward.mapped() else max_draft

    def length(self, n: int) -> int:
        p = self.p[n]
        best, best_rate, gain = 0, 1.0, 0.0
        for d in range(1, self.max_draft + 1):
            gain += p**d
            rate = (1.0 + gain) / self.pass_cost(d)
            if rate > best_rate:
                best, best_rate = d, rate
        if best == 0:
            self.skipped += 1
            if self.skipped % self.probe_every == 0:
                return 1
        return best

    def pass_cost(self, d: int) -> float:
        """The time of a pass with `d` draft tokens, over a plain step's."""
        per = self.register_cost if d + 1 <= self.register_rows else self.token_cost
        return 1.0 + self.fixed_cost + per * d

    @property
    def probe_every(self) -> int:
        """Skipped drafts between two probes (a probe costs a one-token draft's pass)."""
        return round((self.pass_cost(1) - 1.0) / PROBE_OVERHEAD)

    def update(self, n: int, drafted: int, accepted: int) -> None:
        outcomes = [1.0] * accepted + ([0.0] if accepted < drafted else [])
        for x in outcomes:
            self.p[n] += EMA * (x - self.p[n])


class LookupDecoder:
    """Greedy decoding of one sequence with prompt-lookup speculation.

    `cache` (a trimmable mlx-lm prompt cache) holds the KV of `tokens[:fed]`; the rest of
    `tokens` (at least one) is still to be fed. `prefill(n)` feeds up to n of them, leaving the
    last; `step()` then returns the next 1..max_draft+1 greedy tokens (it never trims below
    `fed`). Counts go to `stats` (shared by the engine's decoders). Runs on the MLX thread
    that owns the model.
    """

    def __init__(
        self,
        model: Any,
        cache: list[Any],
        tokens: list[int],
        fed: int,
        max_draft: int,
        stats: Stats | None = None,
        policy: DraftPolicy | None = None,
        drafter: Any = None,
    ):
        if fed >= len(tokens):
            raise ValueError("LookupDecoder needs at least one token to feed")
        self.model = model
        self.cache = cache
        self.tokens = list(tokens)
        self.fed = fed
        self._lookup: PromptLookup | None = None  # made at the first draft (~4 ms a 1k tokens)
        self.policy = policy if policy is not None else DraftPolicy.here(max_draft)
        self.stats = stats if stats is not None else Stats()
        self.stepped = False  # the first token was made
        # A draft model instead of prompt lookup (draft_model.ModelDrafter; None: lookup).
        self.drafter = drafter
        # Token healing (models/healing.py): a logits processor for the first tokens; no
        # draft while it constrains them.
        self.healer: Any = None

    @property
    def lookup(self) -> PromptLookup:
        """The n-gram index of the tokens so far, made at the first draft: the first token,
        which is never drafted, does not wait for it."""
        if self._lookup is None:
            self._lookup = PromptLookup(self.tokens)
        return self._lookup

    @property
    def prefilling(self) -> bool:
        """The prompt is not all in the KV cache yet (the target's, or a draft model's: after
        the first token, a draft catches up in `step`, a few tokens at most)."""
        if self.fed < len(self.tokens) - 1:
            return True
        drafter = self.drafter
        return drafter is not None and not self.stepped and drafter.behind(self.tokens)

    def prefill(self, n: int) -> None:
        """Feed up to `n` prompt tokens: the target's first, then the draft model's."""
        import mlx.core as mx

        chunk = self.tokens[self.fed : min(self.fed + n, len(self.tokens) - 1)]
        if not chunk and self.drafter is not None:
            self.drafter.prefill(self.tokens, n)
        if chunk:
            self.model(mx.array(chunk)[None], cache=self.cache)
            mx.eval([c.state for c in self.cache])
            self.fed += len(chunk)

    def step(self, limit: int) -> list[int]:
        """The next greedy tokens, at most `limit` (>= 1)."""
        import mlx.core as mx
        from mlx_lm.models.cache import trim_prompt_cache

        while self.prefilling:
            self.prefill(512)
        # The first token goes out after a one-token pass: a draft would delay it.
        healing = self.healer is not None and not self.healer.done
        k = min(self.policy.max_draft, limit - 1) if self.stepped and not healing else 0
        self.stepped = True
        n, draft = 0, []
        if self.drafter is not None:  # its own length rule: a draft model costs passes
            length = self.drafter.rate.length(min(k, self.drafter.LENGTH))
            draft = self.drafter.draft(self.tokens, length)
        elif k:
            n, draft = self.lookup.draft(k)
            if draft:
                draft = draft[: self.policy.length(n)]
        inputs = self.tokens[-1:] + draft
        logits = self.model(mx.array(inputs)[None], cache=self.cache)[0]
        if healing:
            logits = self.healer(mx.array(self.tokens), logits)
        greedy = greedy_tokens(logits)
        accepted = 0
        while accepted < len(draft) and greedy[accepted] == draft[accepted]:
            accepted += 1
        if len(draft) > accepted:
            trim_prompt_cache(self.cache, len(draft) - accepted)
        new = greedy[: accepted + 1]
        self.fed = len(self.tokens) + accepted
        self.tokens.extend(new)
        if self._lookup is not None:
            self._lookup.extend(new)
        self.stats.steps += 1
        if draft:
            self.stats.drafted += len(draft)
            self.stats.accepted += accepted
            if self.drafter is None:
                self.policy.update(n, len(draft), accepted)
            else:
                self.drafter.rate.update(len(draft), accepted)
        return new[:limit]


def greedy_tokens(logits: Any) -> list[int]:
    """The token mlx-lm's greedy sampler picks for each row of `logits` (rows, vocabulary):
    the argmax of the log-probabilities `logits - logsumexp(logits)`, whose rounding can tie
    a runner-up with the top logit and so pick it when it comes first.

    That logsumexp is an `exp` of every logit (~0.9 ms a row of the embedded model's 49,152 on
    MLX's scalar CPU `exp`). A row whose top logit is alone by more than `tie_margin` cannot
    tie: its argmax is the same. Only a pass with a row that may tie pays for the logsumexp."""
    import mlx.core as mx

    top = mx.max(logits, axis=-1, keepdims=True)
    near = mx.sum(logits >= top - tie_margin(logits.shape[-1], logits.dtype), axis=-1)
    picks = mx.argmax(logits, axis=-1)
    mx.eval(picks, near)  # a NaN row has none near its top, a row of -inf all
    if all(n == 1 for n in near.tolist()):
        return picks.tolist()
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return mx.argmax(logprobs, axis=-1).tolist()


def tie_margin(vocabulary: int, dtype: Any) -> float:
    """How far below the top logit another can still round to the same log-probability: the
    log-probabilities near the top are >= -(log(vocabulary) + margin), where the spacing of
    `dtype`'s numbers is at most eps * 2^ceil(log2(log(vocabulary) + 1)); 4 times that."""
    import math

    import mlx.core as mx

    return 4 * mx.finfo(dtype).eps * 2.0 ** math.ceil(math.log2(math.log(vocabulary) + 1))


def can_speculate(cache: list[Any]) -> bool:
    """Rejected draft positions must be trimmable (a plain KVCache is; a rotating one or a
    state-space layer is not)."""
    from mlx_lm.models.cache import can_trim_prompt_cache

    return bool(cache) and can_trim_prompt_cache(cache)
