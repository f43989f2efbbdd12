"""A local model's log-likelihood of continuations after an inline prompt (inline/rerank.py).

The prompt is the one a generation for the same request renders (backends/local.py `_prompt`,
token healing included), so its KV is in the batch engine's prompt cache; each continuation is
tokenized after the text healing gave back, so every candidate meets the prompt at the same
token boundary. A FIM prompt already holds the code after the cursor: no scores (None).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..models import continuation_logprob, prompt_state
from ..types import Request
from .local_prompt import fim_template

if TYPE_CHECKING:
    from .local import LocalBackend


async def loglikelihoods(
    backend: LocalBackend, request: Request, continuations: Sequence[str]
) -> list[float] | None:
    """log P(text | the request's prompt) per continuation, in nats (models/scoring.py); None
    for a model with a FIM template. Raises what the model's load or forward pass raises."""
    entry = await backend.pool.acquire(backend.spec, backend.dequantize, backend.hub)
    engine = entry.engine
    tok = engine.lm.tokenizer
    if fim_template(tok) is not None:
        return None
    if not continuations:
        return []  # asked whether this model gives scores at all
    seen = backend.recent.plus(list(engine.kept))
    prompt, _, healer = await asyncio.to_thread(backend._prompt, engine.lm, request, 1, seen)
    given_back = healer.healed if healer is not None else ""
    ids = [tok.encode(given_back + text, add_special_tokens=False) for text in continuations]
    run = engine.executor.submit
    state: Any = await asyncio.wrap_future(run(prompt_state, engine, prompt))
    out = []
    for cont in ids:  # one MLX-thread item each: the batch engine's steps run between them
        scored = run(continuation_logprob, engine, state, prompt[-1], cont)
        out.append(await asyncio.wrap_future(scored))
    return out
