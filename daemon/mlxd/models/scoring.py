"""Log-likelihood of continuations after a prompt (lm-eval's `loglikelihood`), on the MLX thread.

How a local model ranks candidate answers (inline/rerank.py): log P(continuation | prompt), in
nats, summed over the continuation's tokens. The prompt's KV comes from the batch engine's
prompt cache (the generation that wrote the candidates left it there), so scoring a candidate
costs one forward pass over its own tokens; each continuation is its own call, so the MLX
thread interleaves them with the batch engine's steps (a step waits for one at most).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PREFILL_CHUNK = 256  # prompt tokens per forward pass when the prompt cache lacks them


def prompt_state(engine: Any, prompt: list[int]) -> list[Any]:
    """A KV cache holding `prompt[:-1]` (its last token is fed with each continuation, for the
    logits that predict the continuation's first token): the nearest one in the engine's
    prompt cache (a copy), prefilled the rest of the way. Runs on the MLX thread."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    head = prompt[:-1]
    cache, rest = engine.cache.fetch_nearest_cache(engine.lm.name, head) if head else (None, [])
    if cache is None:
        cache, rest = make_prompt_cache(engine.lm.model), head
    log.debug("scoring: %d prompt tokens, %d not in the prompt cache", len(prompt), len(rest))
    for at in range(0, len(rest), PREFILL_CHUNK):
        engine.lm.model(mx.array(rest[at : at + PREFILL_CHUNK])[None], cache=cache)
        mx.eval([c.state for c in cache])
    return cache


def continuation_logprob(
    engine: Any, state: list[Any], last: int, continuation: list[int]
) -> float:
    """log P(continuation | prompt) in nats, from `state` (prompt_state's cache, left as it
    is) and the prompt's `last` token; 0.0 for an empty continuation. Runs on the MLX thread."""
    import copy

    import mlx.core as mx

    if not continuation:
        return 0.0
    cache = copy.deepcopy(state)
    logits = engine.lm.model(mx.array([last, *continuation[:-1]])[None], cache=cache)[0]
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, mx.array(continuation)[:, None], axis=-1)[:, 0]
    total = (picked - mx.logsumexp(logits, axis=-1)).sum()
    return float(total.item())
