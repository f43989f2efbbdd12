"""Prompt lookup's drafts and its draft-length policy (pure Python, no model)."""

from __future__ import annotations

from mlxd.models.speculative import PROBE_EVERY, PromptLookup, _Policy


def test_the_longest_suffix_match_drafts_what_followed_it() -> None:
    # "1 2 3" occurred before, followed by 4 5; "3" alone last occurred before 9.
    look = PromptLookup([1, 2, 3, 4, 5, 7, 3, 9, 1, 2, 3])
    assert look.draft(2) == (3, [4, 5])
    assert look.draft(8) == (3, [4, 5, 7, 3, 9, 1, 2, 3])


def test_the_latest_earlier_occurrence_wins_and_the_suffix_never_matches_itself() -> None:
    look = PromptLookup([5, 1, 5, 2, 5])
    assert look.draft(1) == (1, [2])  # 5 -> 2 (latest), not 5 -> 1
    assert PromptLookup([5]).draft(4) == (0, [])
    assert PromptLookup([1, 2, 3]).draft(4) == (0, [])


def test_extending_indexes_the_new_tokens() -> None:
    look = PromptLookup([1, 2, 3])
    look.extend([9, 1, 2])
    assert look.draft(3) == (2, [3, 9, 1])


def test_drafts_stop_when_they_do_not_pay_and_probe_now_and_then() -> None:
    pol = _Policy(max_draft=8)
    for _ in range(30):
        pol.update(1, 1, 0)  # one-token matches never accepted
    lengths = [pol.length(1) for _ in range(PROBE_EVERY * 2)]
    assert lengths.count(0) == len(lengths) - 2 and lengths.count(1) == 2


def test_drafts_grow_when_they_are_accepted() -> None:
    pol = _Policy(max_draft=8)
    for _ in range(30):
        pol.update(3, 4, 4)
    assert pol.length(3) == 8
