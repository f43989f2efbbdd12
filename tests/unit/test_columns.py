"""inline/context.py: LSP columns to code points on C-speed paths (issue #14 attack, item 8),
checked against a walk of the line code point by code point, the definition."""

from __future__ import annotations

import itertools

import pytest

from mlxd.prompts.positions import column_to_offset, offset_to_column

ALPHABET = ["a", "\u00e9", "\u65e5", "\U0001f600", "\ud83d", "\ude00"]  # 1-4 bytes, lone halves


def units(ch: str, encoding: str) -> int:
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    return len(ch.encode("utf-8", "surrogatepass")) if encoding == "utf-8" else 1


def walk(line: str, character: int, encoding: str) -> int:
    used = 0
    for i, ch in enumerate(line):
        used += units(ch, encoding)
        if used > character:
            return i
    return len(line)


LINES = ["".join(p) for n in range(4) for p in itertools.product(ALPHABET, repeat=n)]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_columns_and_offsets_agree_with_the_walk(encoding: str) -> None:
    for line in LINES:
        for character in range(-1, 14):
            assert column_to_offset(line, character, encoding) == walk(line, character, encoding)
        for offset in range(len(line) + 2):
            width = sum(units(ch, encoding) for ch in line[:offset])
            assert offset_to_column(line, offset, encoding) == width
