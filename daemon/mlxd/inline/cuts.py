"""Where a time or token cap cuts an inline answer: when generation must stop, and what of a
cut answer may be shown (whole lines only: a piece of a word is worse than nothing)."""

from __future__ import annotations

from typing import Any, NamedTuple

from mlxd.prompts import CursorContext

from . import why
from .postprocess import RULES, clean_why, plain_text

# Longest margin kept from inline.max_ms for the work after generation stops (issue #17 item 3).
FINISH_MARGIN_S = 0.05


def answer_by(max_ms: int) -> float:
    """Seconds after its arrival by which a request's generation must stop: inline.max_ms,
    less a margin for what follows (closing the stream, cleaning, the reply), so that the
    answer itself is out by max_ms."""
    return max_ms / 1000 - min(FINISH_MARGIN_S, max_ms / 1000 * 0.1)


def text_and_finish(answer: Any) -> tuple[str, str]:
    """(text, finish reason) of what `generate` returned; a bare string is finished."""
    if isinstance(answer, str):
        return answer, "stop"
    return answer.text, answer.finish_reason


def complete_lines(text: str) -> str:
    """`text` without its unfinished last line: what a token or time cap cut mid-line.

    A piece of a word or a lone operator is worse than nothing as ghost text; a line the model
    ended (a newline) is a complete unit. A cut that came before any newline leaves "".
    """
    text = text.replace("\r\n", "\n")
    return text[: text.rfind("\n") + 1]


def ends_cut(raw: str, suggestion: str) -> bool:
    """Whether `suggestion` ends with the unfinished last line of a cut generation."""
    tail = raw.replace("\r\n", "\n").rsplit("\n", 1)[-1].rstrip()
    return bool(tail.strip() and suggestion.rstrip().endswith(tail.strip()))


class Cleaned(NamedTuple):
    text: str  # what of the answer may be shown
    finish: str  # its finish reason
    fragment: bool  # what is shown ends in a fragment (a cut line, whole_lines off)
    # Asked again, the model would say the same: the answer ended by itself, or a cap cut it
    # after whole lines that post-processing emptied (a line leaving the block, a repeat of
    # the next line): more of it would not be shown either.
    final: bool


def cleaned(answer: Any, ctx: CursorContext, whole_lines: bool) -> Cleaned:
    """What of `answer` may be shown at `ctx` (Cleaned). When a cap cut the answer
    ("length") and `whole_lines`, only its finished lines are kept: a piece of a word is worse
    than nothing (complete_lines keeps fragments 0)."""
    raw, finish = text_and_finish(answer)
    raw = plain_text(raw)
    cut = finish == "length" and whole_lines
    kept = complete_lines(raw) if cut else raw
    text, emptied = clean_why(kept, ctx)
    if why.collecting():
        why.answer(_dropped(raw, kept, text, finish, emptied))
    # A fragment is shown only when the cut text is (whole_lines off): with whole_lines what
    # is kept never holds the cut line, and a kept line that merely ends like it (`x = y` then
    # a cut `y`) was counted as one.
    fragment = finish == "length" and not whole_lines and ends_cut(raw, text)
    final = finish != "length" or (cut and not text and emptied is not None)
    return Cleaned(text, finish, fragment, final)


def _dropped(raw: str, kept: str, text: str, finish: str, emptied: str | None) -> str | None:
    """Why nothing of an answer is shown (None: something is), for the debug record."""
    if text:
        return None
    if not raw.strip():
        return f"the model answered nothing (finish reason {finish!r})"
    if not kept.strip():
        return "a cap (inline.max_ms, max_tokens) cut it before its first line ended (whole_lines)"
    if emptied is not None:
        return f"emptied by post-processing ({emptied}: {RULES[emptied]})"
    return "nothing left after post-processing"
