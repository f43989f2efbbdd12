"""Keep an inline prompt's start where the model's KV cache holds it (issue #17: KV reuse).

The prefix window is cut to the token budget from the cursor back, its start snapped to a line
grid (prompts/trimming.py). Typing new lines pushes that start down; each time it moves to the
next grid line, the whole prompt after the header differs from what the KV cache holds and is
prefilled again (bench open-files: a refill every fourth request; ~900 tokens, seconds with the
embedded model on two CPU cores). A window a few lines wider that starts where a recent prompt
started costs only the new lines: it is preferred, up to SLACK over the budget. Past that, the
window moves to the budget's start, which then holds for another SLACK of typing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..models import RecentPrompts, fits
from ..prompts import Window
from ..types import Request

# How far over the token budget a prompt may grow to keep its cached start (a share of it).
SLACK = 0.5
# Candidate widths tried between the budget and budget * (1 + SLACK).
STEPS = 4

Rendered = tuple[list[int], int]  # (prompt tokens, max_tokens left for the answer)


def cached_start(
    full: Rendered,
    wider: Callable[[int], Rendered],
    budget: int,
    limit: int,
    recent: RecentPrompts,
) -> Rendered:
    """`full` (the prompt for `budget`), or the prompt `wider(b)` for a wider budget b (at
    most `limit` tokens, the model's own bound) that leaves fewer tokens to prefill beside
    what `recent` prompts hold: the one with the fewest, `full` on a tie. Tries nothing when
    `full` is mostly cached already (a line or two to prefill)."""
    best, best_new = full, len(full[0]) - recent.cached(full[0])
    if best_new <= budget // 8:
        return full
    top = min(limit, int(budget * (1 + SLACK)))
    tried = set()
    for k in range(1, STEPS + 1):
        b = budget + (top - budget) * k // STEPS
        if b <= budget or b in tried:
            continue
        tried.add(b)
        candidate = wider(b)
        new = len(candidate[0]) - recent.cached(candidate[0])
        if new < best_new:
            best, best_new = candidate, new
    return best


def widest_cached(
    narrow: Callable[[int], Rendered], widths: list[int], allowed: int, recent: RecentPrompts
) -> Rendered | None:
    """The widest prompt `narrow(b)`, b in `widths` (a cursor's warm-up rungs), that the KV
    cache holds enough of for its other tokens to be prefilled within `allowed`; None: none."""
    for b in sorted(widths, reverse=True):
        candidate = narrow(b)
        cached = recent.cached(candidate[0])
        if cached and fits(len(candidate[0]), cached, allowed):
            return candidate
    return None


def snippets_first(
    window: Window, prompt: list[int], seen: RecentPrompts, header: Callable[[Window], list[int]]
) -> Window:
    """The window a time cap narrows: `window` without its neighbour snippets unless the KV
    cache holds them. Not held, they would take the place of text around the cursor that the
    time cap allows (they are the first text to go); held, they cost no time, and dropping
    them would change the prompt's opening, which the cache holds. `prompt` is `window`'s
    prompt; `header(w)` renders `w`'s header alone (a prompt sharing its opening tokens)."""
    bare = window.without_snippets()
    if bare.header == window.header:
        return window  # no snippets
    opening = header(window)
    pairs = enumerate(zip(opening, prompt, strict=False))
    shared = next((i for i, (a, b) in pairs if a != b), min(len(opening), len(prompt)))
    return window if shared and seen.cached(prompt) >= shared else bare


def continued(tokenizer: Any, head: list[int], text: str, seen: RecentPrompts) -> list[int]:
    """The tokens of prompt `head` followed by `text`, an answer to it that was cut (a request
    goes on from it): as generated, where a sequence the engine kept holds `head` and then
    tokens that decode to the start of `text` (the longest), so that the KV cache matches
    them; the rest of `text` encoded after them. Encoding `text` anew splits it otherwise
    than the model did, and the cache would miss from the first difference on.

    A prompt that ended mid-word was sent without its last token (models/healing.py), and the
    answer typed that token's text again, often as a longer token ("bel" + "ence" as
    "belence"): such a sequence holds `head` but its last token, then tokens that decode to
    that token's text and the start of `text`; taken too (it missed from the heal point on)."""
    best: tuple[int, list[int], str] = (len(head), [], text)  # (prompt kept, answer, to go)
    for seq in seen.prompts:
        for keep in (len(head), len(head) - 1):
            if keep < 1 or seq[:keep] != head[:keep]:
                continue
            healed = tokenizer.decode(head[keep:])
            if keep < len(head) and (not healed or "\ufffd" in healed):
                break  # not a heal: heal_point never heals a piece of a character
            wanted = healed + text
            tail = _decoding_to_start(tokenizer, list(seq[keep:]), wanted)
            said = tokenizer.decode(tail)
            if len(said) < len(healed):  # not past the heal point: as if not healed
                continue
            # A tie goes to the sequence: it holds the model's own split (a healed line break
            # typed again glued to the indentation: encoded anew, the two come apart).
            if keep + len(tail) >= best[0] + len(best[1]):
                best = (keep, tail, wanted[len(said) :])
            break
    keep, tail, rest = best
    return (
        head[:keep]
        + tail
        + (list(tokenizer.encode(rest, add_special_tokens=False)) if rest else [])
    )


def _decoding_to_start(tokenizer: Any, tail: list[int], text: str) -> list[int]:
    """The most tokens at the start of `tail` that decode to a start of `text` (a binary
    search: a long answer is not decoded once per token)."""
    lo, hi = 0, len(tail)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text.startswith(tokenizer.decode(tail[:mid])):
            lo = mid
        else:
            hi = mid - 1
    return tail[:lo]


class Heads:
    """The prompt tokens last rendered for an inline request's text (header, prefix, suffix),
    a few positions at most: a request that goes on from an answer there (`assistant_prefix`),
    or one with no time cap at the same position, continues that very prompt, whose KV cache the
    model holds, instead of one a different window or time fit would render (a full prefill)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._heads: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._lock = threading.Lock()  # prompts are built in worker threads

    @staticmethod
    def key(req: Request) -> tuple[Any, ...]:
        # The text near the cursor and the lengths: hashing a 50 MB prefix per key is not free.
        p, s = req.prefix, req.suffix
        return (req.language, req.header, len(p), p[-4096:], len(s), s[:4096])

    def add(self, req: Request, tokens: list[int]) -> None:
        key = self.key(req)
        with self._lock:
            self._heads[key] = list(tokens)
            self._heads.move_to_end(key)
            while len(self._heads) > self.size:
                self._heads.popitem(last=False)

    def get(self, req: Request) -> list[int] | None:
        key = self.key(req)
        with self._lock:
            return self._heads.get(key)
