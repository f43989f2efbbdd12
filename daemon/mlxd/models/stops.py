"""Stop sequences over streamed text: nothing at or after a stop string is ever emitted.

Text that could still grow into a stop string is held back until it cannot, so deltas never
have to be taken back.
"""

from __future__ import annotations


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
