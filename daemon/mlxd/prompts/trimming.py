"""Trimming the text around the cursor to a token budget, nearest text first."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from .counts import COUNTS

TokenCounter = Callable[[str], int]

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
# The prefix window starts on a line number that is a multiple of this, so that it stays put
# while the user types and the model's KV cache for the prompt's beginning can be reused.
SNAP_LINES = 8
# Share of the token budget given to the prefix; the model needs the lines above the cursor most.
PREFIX_SHARE = 0.75
# No token of a vocabulary is longer than this many characters (whitespace runs are the longest):
# a line longer than budget * this can never fit, and is never tokenized whole (a 1 MB line).
MAX_TOKEN_CHARS = 64
# Characters a token for `loose_tokens`: more than code usually packs (3-4), so a budget counted
# this way lets a provider see about as much text as a local model given the same budget.
LOOSE_CHARS = 5


def approx_tokens(text: str) -> int:
    """Token estimate when no tokenizer is at hand: about 3 characters a token, rounded up.

    Rounding up keeps a per-line sum from undercounting the whole.
    """
    return (len(text) + 2) // 3


def loose_tokens(text: str) -> int:
    """A token count on the low side (LOOSE_CHARS a token): a provider's budget, measured without
    its tokenizer."""
    return (len(text) + LOOSE_CHARS - 1) // LOOSE_CHARS


def _fit_lines(lines: Sequence[str], budget: int, count: TokenCounter) -> list[int]:
    """Token costs of the leading `lines` (taken in order) that fit in `budget` together.

    Lines are counted one by one (an overestimate when a tokenizer merges a newline with the
    next line's indentation, which is the safe side), and counting stops at the first line
    that does not fit, so a huge document costs no more than the budget to measure.
    """
    costs: list[int] = []
    used = 0
    for line in lines:
        if len(line) > (budget - used) * MAX_TOKEN_CHARS:
            break  # cannot fit, whatever the tokenizer: not worth tokenizing
        cost = count(line)
        if used + cost > budget:
            break
        costs.append(cost)
        used += cost
    return costs


def _split_lines(text: str) -> list[str]:
    """Lines with their terminators kept; only LSP's \\n, \\r\\n and \\r end a line."""
    return [line for line in _LINE.findall(text) if line]


def _keep_end(text: str, budget: int, count: TokenCounter) -> str:
    """The longest-ish tail of one long line that fits in `budget` (a character cut)."""
    text = text[max(0, len(text) - max(0, budget) * MAX_TOKEN_CHARS) :]
    while text and count(text) > budget:
        ratio = budget / max(1, count(text))
        keep = min(len(text) - 1, math.floor(len(text) * ratio * 0.9))
        text = text[len(text) - max(0, keep) :]
    return text


def _keep_start(text: str, budget: int, count: TokenCounter) -> str:
    """The longest-ish head of one long line that fits in `budget` (a character cut)."""
    text = text[: max(0, budget) * MAX_TOKEN_CHARS]
    while text and count(text) > budget:
        ratio = budget / max(1, count(text))
        text = text[: min(len(text) - 1, math.floor(len(text) * ratio * 0.9))]
    return text


def _reach(budget: int) -> int:
    """More characters than the lines that fit in `budget` tokens can hold together (each
    fitting line costs at least len / MAX_TOKEN_CHARS tokens): text past it is never split
    into lines, so a 50 MB document is not split whole for each prompt (issue #17)."""
    return max(0, budget) * MAX_TOKEN_CHARS + 1


def _head_lines(prefix: str, budget: int) -> tuple[int, int]:
    """Where a prefix's lines that can fit begin: the offset after the last line feed before
    the `_reach` (0: none), and the lines before it, counted at C speed (the snap grid
    counts lines from the document's start)."""
    start = prefix.rfind("\n", 0, max(0, len(prefix) - _reach(budget))) + 1
    lines = prefix.count("\n", 0, start)
    if prefix.find("\r", 0, start) >= 0:  # a lone \r ends a line too
        lines += prefix.count("\r", 0, start) - prefix.count("\r\n", 0, start)
    return start, lines


def _trim_prefix(prefix: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """Keep the end of the prefix: whole lines, starting on a SNAP_LINES multiple."""
    start, skipped = _head_lines(prefix, budget)
    lines = _split_lines(prefix[start:])
    if not lines:
        return "", 0
    costs = _fit_lines(lines[::-1], budget, count)
    if len(costs) == len(lines) and not skipped:
        return prefix, sum(costs)
    if not costs:  # even the cursor line is too long: cut it by characters
        tail = _keep_end(lines[-1], budget, count)
        return tail, count(tail)
    first = skipped + len(lines) - len(costs)
    # A small window (a tight time budget) snaps finer: rounding a 6-line window's start up to
    # a multiple of 8 could leave only the cursor line.
    grid = SNAP_LINES if len(costs) >= 4 * SNAP_LINES else max(1, len(costs) // 4)
    snapped = min(-(-first // grid) * grid, skipped + len(lines) - 1) - skipped
    return "".join(lines[snapped:]), sum(costs[: len(lines) - snapped])


def _trim_suffix(suffix: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """Keep the start of the suffix in whole lines, a SNAP_LINES multiple of them when cut."""
    end = suffix.find("\n", _reach(budget))  # lines past it cannot fit, nor all before it
    lines = _split_lines(suffix[: end + 1] if end >= 0 else suffix)
    if not lines or budget <= 0:
        return "", 0
    costs = _fit_lines(lines, budget, count)
    if not costs:
        head = _keep_start(lines[0], budget, count)
        return head, count(head)
    kept = len(costs)
    if kept < len(lines) and kept > SNAP_LINES:  # snapped too: the end moves less often
        kept -= kept % SNAP_LINES
    return "".join(lines[:kept]), sum(costs[:kept])


def trim(
    prefix: str,
    suffix: str,
    budget_tokens: int,
    count_tokens: TokenCounter | None = None,
    *,
    narrowing: bool = False,
) -> tuple[str, str]:
    """Trim prefix and suffix to `budget_tokens`, keeping the text nearest the cursor.

    The prefix gets about 3/4 of the budget and the suffix the rest; a side that needs less
    leaves its share to the other. Cuts fall on line boundaries (a half line confuses the
    model more than a missing one) and snap to SNAP_LINES: the prefix window starts on a line
    number that is a multiple of it, the suffix keeps a multiple of it, so neither edge moves
    on every keystroke (the prompt's beginning stays the same: KV-cache reuse).

    Each call is counted (`inline.trims`) unless `narrowing`: cutting text that was already
    trimmed for this request to a smaller budget (its lines are counted again from a memo).
    """
    COUNTS["trims"] += not narrowing
    count = count_tokens or approx_tokens
    budget = max(0, budget_tokens)
    prefix_share = math.floor(budget * PREFIX_SHARE) if suffix else budget
    new_suffix, suffix_used = _trim_suffix(suffix, budget - prefix_share, count)
    new_prefix, prefix_used = _trim_prefix(prefix, budget - suffix_used, count)
    if new_suffix != suffix:  # the prefix may have left room: give it to the suffix
        new_suffix, _ = _trim_suffix(suffix, budget - prefix_used, count)
    return new_prefix, new_suffix
