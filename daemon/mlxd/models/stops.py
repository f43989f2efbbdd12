"""Where an answer ends, in one place: the StopPolicy of a request, and stop sequences over
streamed text (nothing at or after a stop string is ever emitted).

Text that could still grow into a stop string is held back until it cannot, so deltas never
have to be taken back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..types import Request

# Special-token text that ends a completion if a backend let it through (the local model stops
# on its template's end tokens). Ambiguous ones that real code contains (`</s>`, `<PRE>`) are
# left out.
END_MARKERS = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|repo_name|>",
    "<|file_separator|>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<file_sep>",
    "<EOT>",
    "<|EOT|>",
    "<end_of_turn>",
    "<\uff5cfim\u2581begin\uff5c>",
    "<\uff5cfim\u2581hole\uff5c>",
    "<\uff5cfim\u2581end\uff5c>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "[PREFIX]",
    "[SUFFIX]",
    "[MIDDLE]",
)


def finished_lines(text: str) -> int:
    """Lines with text in them that a newline has ended (blank lines do not count)."""
    return sum(1 for line in text.split("\n")[:-1] if line.strip())


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what is safe to emit now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self.pending + text
        cut = min((i for s in self.stops if (i := buf.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.pending = ""
            return buf[:cut]
        keep = self._held(buf)
        self.pending = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """The end of generation: held-back text was not a stop after all."""
        out, self.pending = self.pending, ""
        return "" if self.stopped else out

    def _held(self, buf: str) -> int:
        """Length of the longest tail of `buf` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:n]):
                    best = n
                    break
        return best


def first_lines(text: str, n: int) -> str:
    """At most `n` lines with text in them (blank lines before them are kept: a suggestion at
    the end of a finished line starts on the next one)."""
    lines = text.split("\n")
    seen = 0
    for i, line in enumerate(lines):
        seen += bool(line.strip())
        if seen == n:
            return "\n".join(lines[: i + 1])
    return text


@dataclass(frozen=True, slots=True)
class StopPolicy:
    """Where one request's answer ends, decided here and read by every backend's path.

    - `stop`: stop strings; "one line only" (an inline cursor mid-line) is the "\\n" stop.
      The batch engine (local) and the router's answer filter (every backend) match them as
      the text streams (`matcher`).
    - `max_lines`: at most this many lines with text; the router ends the stream once they are
      finished (`enough_lines`).
    - END_MARKERS: end-of-text / FIM markers that came through as text (the local model stops
      on its FIM template's end tokens and its control tokens in the engine).

    `cut(text)` applies all three to a final text (a delta may run past the end).
    """

    stop: tuple[str, ...] = ()
    max_lines: int | None = None

    @classmethod
    def inline(cls, single_line: bool, max_lines: int | None) -> StopPolicy:
        """An inline request's: one line only (mid-line), else at most `max_lines` lines."""
        return cls(("\n",) if single_line else (), max_lines)

    @classmethod
    def of(cls, request: Request) -> StopPolicy:
        return cls(tuple(request.stop), request.max_lines)

    @property
    def strings(self) -> list[str]:
        """The stop strings, for a Request's `stop`."""
        return list(self.stop)

    def matcher(self) -> StopMatcher:
        return StopMatcher(list(self.stop))

    def enough_lines(self, text: str) -> bool:
        """Whether `text` already holds the `max_lines` finished lines the answer may have."""
        return bool(self.max_lines) and finished_lines(text) >= (self.max_lines or 0)

    def cut(self, text: str) -> str:
        """`text` up to where the answer ends: the first end marker, the first stop string,
        then at most `max_lines` lines with text."""
        ends = [i for m in (*END_MARKERS, *self.stop) if m and (i := text.find(m)) != -1]
        text = text[: min(ends)] if ends else text
        return first_lines(text, self.max_lines) if self.max_lines else text
