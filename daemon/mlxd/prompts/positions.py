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


# Terminators are counted this many characters at a time at C speed (str.count) before the
# regex walks the one chunk holding the line: a position near the end of a 50 MB document cost
# a Python-level step per line (0.35 s here per lookup, three lookups per keystroke; issue #17).
_CHUNK = 1 << 20


def _terminators(text: str, start: int, end: int) -> int:
    """LSP line terminators in text[start:end] (a "\r\n" counts once)."""
    found = text.count("\n", start, end)
    if text.find("\r", start, end) >= 0:
        found += text.count("\r", start, end) - text.count("\r\n", start, end)
    return found


def _line_start(text: str, line: int, pos: int = 0) -> int | None:
    """The offset after the `line`-th terminator from `pos` (line >= 1; `pos` a line start),
    or None when there are fewer."""
    left = line
    while pos < len(text):
        end = min(len(text), pos + _CHUNK)
        while end < len(text) and text[end - 1] == "\r":  # keep a "\r\n" in one chunk
            end += 1
        found = _terminators(text, pos, end)
        if found >= left:
            return next(islice(_EOL.finditer(text, pos, end), left - 1, None)).end()
        left -= found
        pos = end
    return None


def _line_span(text: str, line: int, pos: int = 0) -> tuple[int, int]:
    """(start, end) offsets of a line's content, without its terminator; clamped to the text.
    `line` counts from the line starting at `pos`."""
    start = _line_start(text, line, pos) if line > 0 else pos
    if start is None:  # past the last line: the end of the document
        return len(text), len(text)
    eol = _EOL.search(text, start)
    return start, eol.start() if eol else len(text)


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _width(text: str, encoding: Encoding) -> int:
    """Code units `text` takes in the client's encoding (C speed: a long minified line)."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-16":
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


def column_to_offset(line_text: str, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point index in `line_text` for an LSP column; past the end clamps to the end.

    A column inside a code point (half a surrogate pair) rounds down to that code point's start.
    """
    character = max(0, character)
    head = line_text[:character]  # a code point takes at least one unit: the answer is in it
    if encoding == "utf-32" or head.isascii():
        return len(head)
    if encoding == "utf-8":  # cut the bytes; a cut inside a code point rounds down
        data = head.encode("utf-8", "surrogatepass")[:character]
        for back in range(4):
            try:
                return len(data[: len(data) - back].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                continue
    extra = 0  # UTF-16: each code point past U+FFFF before the column takes one unit more
    for m in _ASTRAL.finditer(head):
        if m.start() + extra + 2 > character:  # at or inside this pair: stop before it
            return min(m.start(), character - extra)
        extra += 1
    return len(head) if len(head) + extra <= character else character - extra


def offset_to_column(line_text: str, offset: int, encoding: Encoding = "utf-16") -> int:
    """The LSP column of a code-point index in `line_text` (the inverse of column_to_offset)."""
    return _width(line_text[:offset], encoding)


def position_to_offset(text: str, line: int, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point offset in the whole document for an LSP position (clamped)."""
    start, end = _line_span(text, line)
    return start + column_to_offset(text[start:end], character, encoding)


def range_to_offsets(
    text: str, start: tuple[int, int], end: tuple[int, int], encoding: Encoding = "utf-16"
) -> tuple[int, int]:
    """Code-point offsets of an LSP range's (line, character) ends, clamped, the end never
    before the start; the end's line is found from the start's (one walk to the edit, not two)."""
    first, last = _line_span(text, start[0])
    at = first + column_to_offset(text[first:last], start[1], encoding)
    if end[0] <= start[0]:
        lines = (first, last) if end[0] == start[0] else _line_span(text, end[0])
    else:
        lines = _line_span(text, end[0] - max(0, start[0]), first)
    return at, max(at, lines[0] + column_to_offset(text[lines[0] : lines[1]], end[1], encoding))


def offset_to_position(text: str, offset: int, encoding: Encoding = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of a code-point offset in the whole document."""
    offset = max(0, min(offset, len(text)))
    # A "\r" just before `offset` may be the first half of "\r\n": still one terminator.
    line = _terminators(text, 0, offset)
    last = text[max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1 : offset]
    return line, offset_to_column(last, len(last), encoding)


def apply_selection(
    text: str, encoding: Encoding, selected_text: str, selected_range: tuple[int, int, int, int]
) -> tuple[str, int]:
    """The document as if the selected popup item were accepted, and the cursor after it
    (LSP's selectedCompletionInfo; `selected_range` = start line, start character, end line,
    end character in `encoding` units)."""
    start_line, start_char, end_line, end_char = selected_range
    start = position_to_offset(text, start_line, start_char, encoding)
    end = max(start, position_to_offset(text, end_line, end_char, encoding))
    return text[:start] + selected_text + text[end:], start + len(selected_text)


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
