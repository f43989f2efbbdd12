"""LSP positions in a huge document at C speed (issue #17: a position near the end of a 50 MB
document walked every line in Python, ~0.35 s a lookup and three lookups a keystroke): the
chunked count answers exactly what walking every terminator answers, a "\\r\\n" across a chunk
edge and a lone "\\r" included."""

from __future__ import annotations

import random
import re
from itertools import islice

import pytest

from mlxd.prompts import positions
from mlxd.prompts.positions import offset_to_position, position_to_offset

EOL = re.compile(r"\r\n|\r|\n")


def walked_offset(text: str, line: int, character: int) -> int:
    """The reference: every terminator walked (the code before the fix), UTF-32 columns."""
    if line <= 0:
        start = 0
    else:
        found = next(islice(EOL.finditer(text), line - 1, None), None)
        if found is None:
            return len(text)
        start = found.end()
    eol = EOL.search(text, start)
    return min(start + max(0, character), eol.start() if eol else len(text))


def walked_position(text: str, offset: int) -> tuple[int, int]:
    lines = EOL.split(text[:offset])
    return len(lines) - 1, len(lines[-1])


def random_text(rng: random.Random) -> str:
    parts = rng.choices(["a", "bc", "\n", "\r", "\r\n", "\r\r\n", "é"], k=rng.randint(0, 80))
    return "".join(parts)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_chunked_positions_equal_walking_every_line(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(positions, "_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(300):
        text = random_text(rng)
        for line in range(-1, text.count("\n") + text.count("\r") + 3):
            for character in (0, 1, 2, 50):
                want = walked_offset(text, line, character)
                assert position_to_offset(text, line, character, "utf-32") == want
        for offset in range(len(text) + 1):
            assert offset_to_position(text, offset, "utf-32") == walked_position(text, offset)


def test_a_position_at_the_end_of_a_huge_document_walks_no_line_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "x = 1\n" * 500_000 + "last line"
    steps = []
    real = positions._EOL

    class Counting:
        def finditer(self, *args):  # noqa: ANN002, ANN202
            for match in real.finditer(*args):
                steps.append(1)
                yield match

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(real, name)

    monkeypatch.setattr(positions, "_EOL", Counting())
    assert position_to_offset(text, 500_000, 4) == len(text) - len("last line") + 4
    assert offset_to_position(text, len(text)) == (500_000, len("last line"))
    assert len(steps) <= positions._CHUNK // 6 + 1  # one chunk's lines at most


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_a_range_is_the_two_positions_the_end_never_before_the_start(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(positions, "_CHUNK", chunk)
    rng = random.Random(chunk + 1)
    for _ in range(300):
        text = random_text(rng)
        lines = text.count("\n") + text.count("\r") + 2
        for _ in range(20):
            a = (rng.randint(-1, lines), rng.randint(0, 4))
            b = (rng.randint(-1, lines), rng.randint(0, 4))
            start = walked_offset(text, *a)
            want = (start, max(start, walked_offset(text, *b)))
            assert positions.range_to_offsets(text, a, b, "utf-32") == want, (text, a, b)
