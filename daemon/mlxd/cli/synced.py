"""The text of a document as the forwarder keeps it for a replay (replay.py): every edit applied
as it comes, so that a new daemon is given the current text however long the user has typed.

The text is held in chunks of about CHUNK characters cut at line ends: an edit costs a chunk's
worth of work, not the document's (a 50 MB file takes each keystroke in microseconds), and
memory stays the text. Edits follow LSP's line model exactly as the daemon applies them
(transport/documents.py): \\n, \\r\\n and \\r only, columns in the negotiated position encoding,
positions past a line's end or past the last line clamped, a reversed range replacing nothing.
"""

from __future__ import annotations

import bisect
import itertools
import re
from typing import Any

from ..prompts import normalize_encoding, position_to_offset

CHUNK = 1 << 14  # characters
_EOL = re.compile(r"\r\n|\r|\n")


class SyncedText:
    def __init__(self, text: str) -> None:
        self.replace(text)

    def replace(self, text: str) -> None:
        """The whole document (a change without a range)."""
        self.chunks = _cut(text)
        self.counts = [_terminators(c) for c in self.chunks]

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def edit(self, start: Any, end: Any, new: str, encoding: str) -> None:
        """Replace the range from LSP position `start` to `end` ({"line", "character"}) by
        `new`. Raises KeyError, TypeError or ValueError for a malformed position."""
        enc = normalize_encoding(encoding)
        starts = list(itertools.accumulate(self.counts, initial=0))  # each chunk's first line
        s_line, e_line = max(0, int(start["line"])), max(0, int(end["line"]))
        # A line past the last is in the last chunk (position_to_offset clamps it to the end).
        si, ei = (bisect.bisect_right(starts, n, hi=len(self.counts)) - 1 for n in (s_line, e_line))
        first, last = min(si, ei), max(si, ei)
        merged, base = "".join(self.chunks[first : last + 1]), starts[first]
        a = position_to_offset(merged, s_line - base, int(start["character"]), enc)
        b = position_to_offset(merged, e_line - base, int(end["character"]), enc)
        region, lo, hi = merged[:a] + new + merged[max(a, b) :], first, last + 1
        # A chunk ends at a line end, and a \r\n is never cut: take in the next chunk while
        # the edit left this one without its line end (or ending in a \r before a \n), and
        # the one before while it ends in a \r before the edit's \n.
        while hi < len(self.chunks) and (
            not region.endswith(("\n", "\r"))
            or (region.endswith("\r") and self.chunks[hi].startswith("\n"))
        ):
            region, hi = region + self.chunks[hi], hi + 1
        while lo > 0 and region.startswith("\n") and self.chunks[lo - 1].endswith("\r"):
            region, lo = self.chunks[lo - 1] + region, lo - 1
        cut = _cut(region) if len(region) > 2 * CHUNK else [region]
        self.chunks[lo:hi] = cut
        self.counts[lo:hi] = [_terminators(c) for c in cut]


def _cut(text: str) -> list[str]:
    """`text` in chunks of at least CHUNK characters, each ending at a line end (the last one
    at the text's end)."""
    out, pos = [], 0
    while len(text) - pos > CHUNK and (m := _EOL.search(text, pos + CHUNK)) is not None:
        out.append(text[pos : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return out


def _terminators(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")
