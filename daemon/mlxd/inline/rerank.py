"""Where the cursor rests at a block start: several candidates, and the one that best leads into
the code after the cursor (issue #16).

A model without FIM training writes, greedily, the likeliest text after the prefix alone; it
never sees the code that follows the cursor. When the cursor rests (background work, no one
waiting yet), once the greedy answer is stored the resting job samples SAMPLES more candidates
side by side in one batch, and keeps the one with the highest joint log-likelihood of the
candidate followed by the suffix's first lines, log P(candidate + suffix head | prompt): Bayes'
rule for filling a hole, P(c | prefix, suffix) ∝ P(c | prefix) · P(suffix | prefix, c), scored
by the same local model on the prompt its KV cache holds (backends/local_score.py).
inline.rerank, off by default.

Measured (issue #16): offline, with the full 1,024-token prompt, 6 samples of up to 64 tokens
and 48 tokens of suffix, edit similarity on 24 Python blocks went from 0.345 (greedy) to 0.434.
In the daemon on two cores (the resting prompt narrowed to what prefills in time, 4 samples of
32 tokens, 120 characters of suffix; 36 blocks in three languages, 6 s pause) it was level with
the greedy answer on average: much better on some blocks, worse on others, since the joint
likelihood favours short bodies.

Only candidates made of whole lines compete (cuts.cleaned); the greedy answer stays the answer
when the model gives no scores (a FIM model, which sees the suffix already), fewer than two
distinct candidates came, or it scores best.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlxd.prompts import CursorContext
from mlxd.types import Request

from .cuts import cleaned
from .jobs import Continued

if TYPE_CHECKING:
    from .engine import InlineEngine

# log P(text | the request's prompt) per text (nats); None: this model gives no scores.
Score = Callable[[Request, CursorContext, Sequence[str]], Awaitable[list[float] | None]]

log = logging.getLogger(__name__)

SAMPLES = 4  # sampled candidates beside the greedy one
TEMPERATURE = 0.7
# A sampled candidate's tokens at most: most blocks' bodies are a line or two, and a cut last
# line is dropped (whole lines); four of 64 tokens side by side took 3.5 s on two cores.
SAMPLE_TOKENS = 32
SUFFIX_CHARS = 120  # of the code after the cursor, scored after each candidate


def wanted(engine: InlineEngine, ctx: CursorContext) -> bool:
    """Whether the resting job at `ctx` reranks: inline.rerank on, a scorer wired in, and a
    block start (the whole block is asked for)."""
    block = ctx.max_lines is None and not ctx.single_line
    return engine.cfg.rerank and engine.score is not None and block


def suffix_head(suffix: str) -> str:
    """The suffix's first lines, about SUFFIX_CHARS of them (cut at a line end when one is
    near): what each candidate is scored as leading into."""
    head = suffix[:SUFFIX_CHARS]
    end = head.rfind("\n")
    return head[:end] if end > SUFFIX_CHARS // 2 else head


async def reranked(
    engine: InlineEngine,
    ctx: CursorContext,
    request: Request,
    run: Callable[..., Awaitable[Any]],
    early: Callable[[Any], bool] = lambda answer: True,
) -> Any:
    """The answer to keep at `ctx`: `request`'s greedy answer, or the sampled candidate that
    scores best (a Continued, its text whole lines, "length" when its cap cut it). `run(request,
    ctx)` generates (the background runner). The greedy answer runs first, alone and bounded as
    before, and goes to `early` at once (False: nothing to show, no reranking): a request that
    comes while the samples (side by side in the batch engine) and the scores are on their way
    is answered with it, and that stops the reranking (nexts.py)."""
    greedy = await run(request, ctx)  # alone first, as without reranking: no slower
    # Nothing to show (a cut first line, no answer): as without reranking, so that the line
    # goes on at once (rest.py) for a request that waits for it. A FIM model: no scores.
    if not early(greedy) or await _scores(engine, ctx, request, []) is None:
        return greedy
    # No time cap (the greedy answer is there for whoever asks): max_tokens bounds them.
    tokens = min(SAMPLE_TOKENS, request.max_tokens or SAMPLE_TOKENS)
    sampled = replace(
        request, temperature=TEMPERATURE, deadline=None, max_time_s=None, max_tokens=tokens
    )
    tasks = [asyncio.ensure_future(run(sampled, ctx)) for _ in range(SAMPLES)]
    try:
        answers = [greedy, *await asyncio.gather(*tasks, return_exceptions=True)]
    finally:
        for task in tasks:
            task.cancel()  # cancelled (an edit, a request elsewhere): no more of them
    texts = _candidates(engine, ctx, answers)
    best = await _best(engine, ctx, request, list(texts)) if len(texts) > 1 else None
    if best is None:
        return greedy
    engine.stats.reranked += 1
    if best == cleaned(greedy, ctx, engine.cfg.whole_lines).text:
        return greedy
    engine.stats.rerank_changed += 1
    return Continued(best, texts[best], 0)  # a sample its cap cut goes on (rest.py)


async def _best(
    engine: InlineEngine, ctx: CursorContext, request: Request, texts: list[str]
) -> str | None:
    """The text whose continuation by the suffix's head the model scores highest; None when
    it gives no scores (a FIM model, a failure: the greedy answer stands)."""
    head = suffix_head(ctx.suffix)
    began = time.monotonic()
    scores = await _scores(engine, ctx, request, [text + head for text in texts])
    if not scores:
        return None
    best = max(range(len(texts)), key=scores.__getitem__)
    ms = (time.monotonic() - began) * 1000
    log.debug(
        "rerank at %s: %d candidates scored in %.0f ms, kept #%d", ctx.uri, len(texts), ms, best
    )
    return texts[best]


async def _scores(
    engine: InlineEngine, ctx: CursorContext, request: Request, texts: list[str]
) -> list[float] | None:
    """The model's log-likelihood of each text after the request's prompt ([] for none:
    whether it gives scores at all); None: no scorer, a FIM model, or a failure."""
    if engine.score is None:
        return None
    scoring = replace(request, deadline=None, max_time_s=None, temperature=0.0)
    try:
        return await engine.score(scoring, ctx, texts)
    except Exception as exc:  # background work fails quietly
        log.debug("rerank at %s: no scores: %s: %s", ctx.uri, type(exc).__name__, exc)
        return None


def _candidates(engine: InlineEngine, ctx: CursorContext, answers: list[Any]) -> dict[str, str]:
    """The distinct non-empty texts the answers would show at `ctx`, in order, each with its
    answer's finish reason ("length": a cap cut it after these whole lines)."""
    texts: dict[str, str] = {}
    for answer in answers:
        if answer is None or isinstance(answer, BaseException):
            continue
        done = cleaned(answer, ctx, engine.cfg.whole_lines)
        if done.text.strip() and done.text not in texts:
            texts[done.text] = done.finish
    return texts
