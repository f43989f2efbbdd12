"""Extra inline items when the user asks (triggerKind Invoked): sampled, distinct, whole."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mlxd.prompts import CursorContext
from mlxd.types import GoOn

from .cuts import cleaned

if TYPE_CHECKING:
    from .engine import InlineEngine

# Extra items when the user asks (triggerKind Invoked), sampled at this temperature.
ALTERNATIVES = 2
ALT_TEMPERATURE = 0.8


async def alternatives(
    engine: InlineEngine, ctx: CursorContext, first: str, arrived: float, go: GoOn | None = None
) -> list[str]:
    """Up to ALTERNATIVES more suggestions, sampled at ALT_TEMPERATURE, distinct and whole.

    They run after the greedy answer, so its prompt is in the KV cache and they cost decode
    only, side by side in one batch, within what is left of the same inline.max_ms. `go`:
    the greedy answer's generation going on (types.GoOn), stopped if the request is cancelled.
    """
    ctx.header = ctx.header or engine._header(ctx, ())
    request = replace(engine._request(ctx, arrived), temperature=ALT_TEMPERATURE)
    try:
        answers = await engine._run(ctx, [request] * ALTERNATIVES)
    except BaseException:
        if go is not None:
            go.stop()  # cancelled: no next suggestion after this one
        raise
    seen = {first.strip()}
    out: list[str] = []
    for answer in answers or []:
        if answer is None or isinstance(answer, BaseException):
            continue
        text = cleaned(answer, ctx, engine.cfg.whole_lines).text
        if text.strip() and text.strip() not in seen:
            seen.add(text.strip())
            out.append(text)
    return out
