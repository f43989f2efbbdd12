"""LSP positions <-> string offsets.

LSP counts columns in UTF-16 code units unless the client negotiated another encoding, while a
Python string indexes code points: an emoji is 2 UTF-16 units but 1 code point, so a naive
`line[character:]` puts the cursor in the wrong place after the first emoji on a line.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Literal

Encoding = Literal["utf-16", "utf-8", "utf-32"]

# LSP knows exactly these three line terminators (not str.splitlines's \v, \f, \u2028, ...).
_EOL = re.compile(r"\r\n|\r|\n")


def _units(ch: str, encoding: Encoding) -> int:
    """Code units one code point takes in the client's encoding."""
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    if encoding == "utf-8":
        return len(ch.encode("utf-8", "surrogatepass"))
    return 1


def _line_span(text: str, line: int) -> tuple[int, int]:
    """(start, end) offsets of a line's content, without its terminator; clamped to the text."""
    if line <= 0:
        start = 0
    else:
        found = next(islice(_EOL.finditer(text), line - 1, None), None)
        if found is None:  # past the last line: the end of the document
            return len(text), len(text)
        start = found.end()
    eol = _EOL.search(text, start)
    return start, eol.start() if eol else len(text)


def column_to_offset(line_text: str, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point index in `line_text` for an LSP column; past the end clamps to the end.

    A column inside a code point (half a surrogate pair) rounds down to that code point's start.
    """
    if encoding == "utf-32":
        return max(0, min(character, len(line_text)))
    used = 0
    for i, ch in enumerate(line_text):
        used += _units(ch, encoding)
        if used > character:
            return i
    return len(line_text)


def offset_to_column(line_text: str, offset: int, encoding: Encoding = "utf-16") -> int:
    """The LSP column of a code-point index in `line_text` (the inverse of column_to_offset)."""
    head = line_text[:offset]
    if encoding == "utf-32":
        return len(head)
    return sum(_units(ch, encoding) for ch in head)


def position_to_offset(text: str, line: int, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point offset in the whole document for an LSP position (clamped)."""
    start, end = _line_span(text, line)
    return start + column_to_offset(text[start:end], character, encoding)


def offset_to_position(text: str, offset: int, encoding: Encoding = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of a code-point offset in the whole document."""
    head = text[:offset]
    lines = _EOL.split(head)
    # A "\r" ending `head` may be the first half of "\r\n": still one terminator, already split.
    return len(lines) - 1, offset_to_column(lines[-1], len(lines[-1]), encoding)


def normalize_encoding(value: object) -> Encoding:
    """The encoding named by an LSP PositionEncodingKind, a plain string or an enum member.

    `str()` of lsprotocol's enum reads "PositionEncodingKind.Utf16", not "utf-16"; anything
    unrecognised is UTF-16, the LSP default.
    """
    name = str(getattr(value, "value", value)).lower()
    if "32" in name:
        return "utf-32"
    if "8" in name:
        return "utf-8"
    return "utf-16"
