"""Fit an inline prompt to the time budget: measured model speed, and what the KV cache holds.

A cold prompt of ~1,500 tokens takes 4-5 s to prefill with the embedded model on two CPU cores;
with a 1.5 s cap that leaves no time for even one line, and the answer is a fragment or nothing.
So the prompt is sized to the time: tokens the KV cache already holds cost (almost) nothing,
each other token costs 1 / prefill speed, and a whole line must still fit after them.
Speeds are measured as the model runs (an exponential moving average), so fast hardware gets
more context and a loaded machine less.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Tokens planned for the answer: the rest of a line (half a line of code, typically) or a
# short next line. Planning for a whole long line would leave a slow machine no prompt at all.
LINE_TOKENS = 8
# At a block start the first line is longer: "\n", its indentation, a whole statement, "\n".
# Python holes of bench quality (SmolLM2's tokenizer, n = 20): a block's first line takes a
# median of 10 tokens (p75 19), a single-line hole's rest of the line 6 (p75 8): planned for
# 8, a block start's prompt was sized for a line shorter than most of its first lines.
BLOCK_LINE_TOKENS = 16
# Share of the time budget planned for; the rest absorbs noise (other work on the cores).
SAFETY = 0.8
# Never less context than this, however slow the machine: a few lines above the cursor.
MIN_PROMPT_TOKENS = 48
# The smallest window a cursor's warm-up prefills (warm_rungs): a few lines above the cursor.
RUNG_MIN = 128
# Weight of a new measurement in the moving average.
ALPHA = 0.3


@dataclass(slots=True)
class SpeedMeter:
    """Prefill and decode speed (tokens/s) of one model on this machine, as measured."""

    prefill_tps: float = 250.0  # starting guesses for a small model on CPU, until measured
    decode_tps: float = 10.0
    samples: int = 0  # prefill measurements so far
    decode_samples: int = 0

    def observe_prefill(self, tokens: int, seconds: float) -> None:
        """`tokens` prompt tokens (not from the KV cache) took `seconds` to the first token."""
        if tokens >= 16 and seconds > 0:
            # The first measurement replaces the guess: a busy machine can be 20x off it.
            self.prefill_tps = _ewma(self.prefill_tps, tokens / seconds, first=not self.samples)
            self.samples += 1

    def observe_first_token(self, tokens: int, seconds: float) -> None:
        """`tokens` prompt tokens (not from the KV cache) took `seconds` to the first token,
        which is one decode step more than their prefill: that step is planned for with the
        line (`new_tokens_within`), and counted in the prefill as well it made a small prompt
        look several times slower than it is (48 tokens at 500 tok/s and a 50 ms step: 330),
        and the time cap then cut the next prompt to less than it could afford."""
        self.observe_prefill(tokens, max(seconds / 2, seconds - 1 / self.decode_tps))

    def observe_decode(self, tokens: int, seconds: float) -> None:
        """`tokens` generated after the first took `seconds`."""
        if tokens >= 2 and seconds > 0:
            first = not self.decode_samples
            self.decode_tps = _ewma(self.decode_tps, tokens / seconds, first=first)
            self.decode_samples += 1

    def new_tokens_within(self, budget_s: float, line_tokens: int = LINE_TOKENS) -> int:
        """How many prompt tokens that are not in the KV cache can be prefilled, with room left
        for a line of `line_tokens` in `budget_s` seconds."""
        left = budget_s * SAFETY - line_tokens / self.decode_tps
        return max(0, int(left * self.prefill_tps))


def prompt_step(allowed: int) -> int:
    """`allowed` prompt tokens rounded down to a power of two (at least MIN_PROMPT_TOKENS): the
    window a time cap cuts must not move with every small change in the measured speed, or
    consecutive requests start their prompts on other lines and the KV cache holds only the
    header (bench typing: 7-13 of ~250 tokens reused one keystroke later)."""
    if allowed <= MIN_PROMPT_TOKENS:
        return MIN_PROMPT_TOKENS
    return max(MIN_PROMPT_TOKENS, 1 << (allowed.bit_length() - 1))


def warm_rungs(budget: int) -> list[int]:
    """The narrower windows, each a `prompt_step`, that a time-capped request looks for in
    the KV cache before it cuts a cold one: 128, 256, ... below `budget` tokens. A cursor's
    warm-up (inline/ahead.py AT_REST) prefills one of them: the full window takes seconds to
    prefill on a slow machine."""
    out, step = [], RUNG_MIN
    while step < budget:
        out.append(step)
        step *= 2
    return out


def warm_rung(widest: int, speed: SpeedMeter, max_ms: int) -> int:
    """The window (prompt tokens, a `warm_rungs` step) a cursor's warm-up prefills, at most
    `widest`: what prefills within one inline.max_ms at the measured speed, so that the
    suggestion made after it follows the rest within about a request's bound (a 256-token
    window took 1.7 s at 121 tokens/s on a slower two-core machine; the suggestion at a
    block start came 0.8 s after a request 3 s after the click). Never below RUNG_MIN."""
    fits_in = speed.new_tokens_within(max_ms / 1000, 0)
    return max(RUNG_MIN, min(widest, prompt_step(fits_in)))


def _ewma(old: float, new: float, *, first: bool = False) -> float:
    return new if first else (1 - ALPHA) * old + ALPHA * new


@dataclass(slots=True)
class RecentPrompts:
    """The last few prompts sent to one model: what its KV cache most likely holds.

    The batch engine keeps each finished or cancelled sequence's cache (mlx-lm's
    LRUPromptCache, longest-prefix match); this is the event loop's cheap view of it.
    """

    size: int = 8
    prompts: deque[list[int]] = field(default_factory=deque)

    def add(self, tokens: Sequence[int]) -> None:
        self.prompts.append(list(tokens))
        while len(self.prompts) > self.size:
            self.prompts.popleft()

    def plus(self, sequences: Iterable[Sequence[int]]) -> RecentPrompts:
        """These prompts and `sequences` (what the engine kept: prompts with their answers, so
        that a prompt continuing an answer is seen as cached)."""
        out = RecentPrompts(size=self.size)
        out.prompts = deque([*self.prompts, *(list(s) for s in sequences)])
        return out

    def held(self, tokens: Sequence[int], n: int) -> None:
        """Only the first `n` tokens of the recent prompt `tokens` reached the KV cache (a
        prefill cut short): the rest must not look cached."""
        for i, prompt in enumerate(self.prompts):
            if len(prompt) > n and prompt == list(tokens):
                self.prompts[i] = prompt[:n]

    def cached(self, tokens: Sequence[int]) -> int:
        """The longest prefix of `tokens` a recent prompt shares."""
        return max((common_prefix(tokens, p) for p in self.prompts), default=0)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def fits(total: int, cached: int, allowed_new: int) -> bool:
    """Whether a prompt of `total` tokens, `cached` of them in the KV cache, fits."""
    return total - cached <= allowed_new
