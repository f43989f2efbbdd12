"""Prompt lookup's drafts and its draft-length policy (pure Python, no model)."""

from __future__ import annotations

import pytest

from mlxd.models.speculative import (
    FORWARDED_FIXED_COST,
    MAX_NGRAM,
    SHADOWED_FIXED_COST,
    SHADOWED_VERIFY_COST,
    VERIFY_COST,
    DraftPolicy,
    PromptLookup,
)


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


def test_a_five_token_match_beats_a_later_shorter_one() -> None:
    # "1 2 3 4 5" occurred once, followed by 6; its last three tokens "3 4 5" occurred later,
    # followed by 9. The longer context is the likelier one (a 3-gram cap drafted 9).
    look = PromptLookup([1, 2, 3, 4, 5, 6, 0, 3, 4, 5, 9, 0, 1, 2, 3, 4, 5])
    assert look.draft(2) == (5, [6, 0])


def test_every_matched_length_has_an_acceptance_estimate() -> None:
    pol = DraftPolicy(max_draft=8)
    assert len(pol.p) == MAX_NGRAM + 1
    look = PromptLookup(list(range(MAX_NGRAM)) + [99] + list(range(MAX_NGRAM)))
    n, draft = look.draft(1)
    assert (n, draft) == (MAX_NGRAM, [99]) and pol.length(n) > 0


def test_extending_indexes_the_new_tokens() -> None:
    look = PromptLookup([1, 2, 3])
    look.extend([9, 1, 2])
    assert look.draft(3) == (2, [3, 9, 1])


@pytest.mark.parametrize(
    ("fixed_cost", "token_cost"),
    [(0.0, VERIFY_COST), (FORWARDED_FIXED_COST, VERIFY_COST),
     (SHADOWED_FIXED_COST, SHADOWED_VERIFY_COST)],
)  # fmt: skip
def test_drafts_stop_when_they_do_not_pay_and_probe_now_and_then(
    fixed_cost: float, token_cost: float
) -> None:
    pol = DraftPolicy(max_draft=8, fixed_cost=fixed_cost, token_cost=token_cost)
    for _ in range(30):
        pol.update(1, 1, 0)  # one-token matches never accepted
    lengths = [pol.length(1) for _ in range(pol.probe_every * 2)]
    assert lengths.count(0) == len(lengths) - 2 and lengths.count(1) == 2
    # A probe that always fails costs plain text at most 1% (a one-token pass's extra cost).
    assert 2 * (fixed_cost + token_cost) / len(lengths) <= 0.01


def test_a_model_on_quantized_shadows_prices_draft_tokens_higher() -> None:
    """Its plain steps read the 4-bit weights, and its verify passes unpack them (bench
    speculation, session 14: with the float costs, prose decoded at 0.93x plain): a first
    draft token costs more than at the float costs (0.18 of a step, not 0.15), so one
    accepted 16 times in 100 no longer pays there; one accepted 8 times in 10 still does."""
    shadowed = DraftPolicy.here(8, shadowed=True)
    assert (shadowed.fixed_cost, shadowed.token_cost) == (
        SHADOWED_FIXED_COST,
        SHADOWED_VERIFY_COST,
    )
    plain = DraftPolicy(max_draft=8)
    for pol in (shadowed, plain):
        pol.p[1], pol.p[3] = 0.16, 0.8
    assert plain.length(1) > 0 and shadowed.length(1) == 0
    assert shadowed.length(3) > 0


def test_a_pass_that_costs_more_than_a_plain_step_needs_likelier_drafts() -> None:
    """With mlxd's few-row products any pass with a draft costs a fixed share more than a plain
    step (gemv_forward.py): a draft accepted three times in ten no longer pays, one accepted
    nine times in ten still does."""
    plain, forwarded = (
        DraftPolicy(max_draft=8),
        DraftPolicy(max_draft=8, fixed_cost=FORWARDED_FIXED_COST),
    )
    for pol in (plain, forwarded):
        pol.p[2], pol.p[3] = 0.3, 0.9
    assert plain.length(2) > 0 and forwarded.length(2) == 0
    assert forwarded.length(3) > 0


def test_drafts_grow_when_they_are_accepted() -> None:
    pol = DraftPolicy(max_draft=8)
    for _ in range(30):
        pol.update(3, 4, 4)
    assert pol.length(3) == 8


def test_a_new_policy_drafts_on_a_long_match_even_when_passes_cost_more() -> None:
    """An inline request decodes 10-20 tokens: a policy that has to learn before it drafts
    never drafts. When every pass with a draft costs more (session 11's one-row products on
    sgemv: 1.6x; bench speculation: 1.12 tokens per pass on code, against 2.46 before), the
    priors still draft at once on a 3-gram match, and failures in a row stop it: after four
    the drafts are shorter, after eight there are none (EMA 0.1: a few failures do not stop
    drafts that pay, replayed in session 19)."""
    pol = DraftPolicy(max_draft=8, fixed_cost=FORWARDED_FIXED_COST)
    assert pol.length(3) >= 4
    for _ in range(4):
        pol.update(3, 8, 0)
    assert 0 < pol.length(3) < 4
    for _ in range(4):
        pol.update(3, 8, 0)
    assert pol.length(3) == 0


def test_with_the_few_row_kernel_a_verify_pass_keeps_to_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verify pass of more rows than the kernel takes goes to OpenBLAS, whose rows differ
    from a plain step's in the last bits: drafts stop one row short, so greedy stays exact."""
    import re

    from mlxd import gemv_forward

    source = gemv_forward.SOURCE.read_text()
    assert re.search(rf"MAX_ROWS = {gemv_forward.MAX_ROWS}\b", source)  # one number, twice
    monkeypatch.setattr(gemv_forward, "mapped", lambda: True)
    assert DraftPolicy.here(64).max_draft == gemv_forward.MAX_ROWS - 1
    assert DraftPolicy.here(8).max_draft == 8
    monkeypatch.setattr(gemv_forward, "mapped", lambda: False)
    assert DraftPolicy.here(64).max_draft == 64


def test_a_draft_model_that_does_not_pay_only_probes_and_never_where_no_draft_may_be_made() -> None:
    from mlxd.models.draft_model import DraftRate

    rate = DraftRate()
    assert rate.length(3) == 3  # optimistic at first
    for _ in range(10):
        rate.update(3, 0)  # every draft rejected
    lengths = [rate.length(3) for _ in range(30)]
    assert lengths.count(1) == 3 and set(lengths) == {0, 1}  # a one-token probe now and then
    # No draft where none may be made (the first token, a healed prompt's constrained tokens).
    assert [rate.length(0) for _ in range(30)] == [0] * 30


def test_passes_that_read_the_shadows_in_registers_are_priced_apart() -> None:
    # AVX-512's 3-row quantized tile: passes of 2-3 tokens cost little, 4+ unpack into L1.
    pol = DraftPolicy(8, 0.05, 0.17, register_rows=3, register_cost=0.05)
    assert [round(pol.pass_cost(d), 2) for d in (1, 2, 3, 4)] == [1.10, 1.15, 1.56, 1.73]
    # Tokens accepted 15% / 30% of the time: drafts that pay in registers, not at 0.17 each.
    for chance, there, elsewhere in ((0.15, 1, 0), (0.3, 2, 1)):
        pol.p[1] = chance
        assert pol.length(1) == there
        assert DraftPolicy(8, 0.05, 0.17, p=[0.0, chance] + [0.9] * 4).length(1) == elsewhere
    assert pol.probe_every == 10  # a probe costs a one-token pass: 0.10 over a plain step
