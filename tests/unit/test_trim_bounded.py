"""Trimming a huge document's text splits what the budget can hold, not the document (issue
#17: a 50 MB didOpen's warm-up split all 50 MB into lines on the event loop): only a bounded tail
of the prefix and head of the suffix are split, and the cut is the one splitting them whole
gives (the snap grid still counts lines from the document's start)."""

from __future__ import annotations

import random

import pytest

from mlxd.prompts import trimming
from mlxd.prompts.trimming import MAX_TOKEN_CHARS, trim


def doc(lines: int, seed: int, ends: tuple[str, ...] = ("\n",)) -> str:
    rng = random.Random(seed)
    return "".join(f"v{i} = {'x' * rng.randint(0, 90)}{rng.choice(ends)}" for i in range(lines))


@pytest.fixture
def split_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = trimming._split_lines

    def spy(text: str) -> list[str]:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(trimming, "_split_lines", spy)
    return seen


def test_a_huge_prefix_and_suffix_are_split_only_near_the_cursor(split_sizes: list[int]) -> None:
    prefix, suffix = doc(60_000, 1), doc(60_000, 2)  # ~3 MB each
    budget = 256
    new_prefix, new_suffix = trim(prefix, suffix, budget)
    assert new_prefix and new_suffix
    assert split_sizes and max(split_sizes) < budget * MAX_TOKEN_CHARS + 200, split_sizes


ENDS = [("\n",), ("\r\n",), ("\n", "\r\n", "\r")]


@pytest.mark.parametrize("ends", ENDS)
@pytest.mark.parametrize("seed", range(3))
def test_the_cut_is_the_one_splitting_the_whole_text_gives(
    ends: tuple[str, ...], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    prefix, suffix = doc(3000, seed, ends), doc(3000, seed + 10, ends)
    if seed == 2:  # a cursor in a long line, and a last line without terminator
        prefix, suffix = prefix + "y" * 20_000, "z" * 30_000 + suffix
    budgets = [0, 1, 7, 48, 100, 300, 1000, 5000, 50_000, rng.randint(1, 3000)]
    bounded = [trim(prefix, suffix, b) for b in budgets]
    monkeypatch.setattr(trimming, "_reach", lambda budget: 10**12)  # split whole: as before
    assert bounded == [trim(prefix, suffix, b) for b in budgets]
