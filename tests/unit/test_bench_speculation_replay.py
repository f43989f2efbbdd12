"""bench.speculation_replay's replay: LookupDecoder's drafting, token by token, with no model."""

from __future__ import annotations

from bench.speculation_replay import replay

from mlxd.models.speculative import DraftPolicy

COST = {rows: 1.0 + 0.1 * (rows - 1) for rows in range(1, 13)}


def test_a_text_that_repeats_its_prompt_is_drafted_and_kept() -> None:
    prompt = list(range(100, 140)) + list(range(100, 103))  # its start again: 100 101 102
    text = list(range(103, 133))  # and on as before
    speed, drafted, accepted, passes = replay(prompt, text, DraftPolicy(max_draft=8), COST)
    assert accepted == drafted > 0  # every draft right: the text is the prompt's own
    assert passes < len(text) - 1 and speed > 1.5


def test_a_text_with_nothing_to_look_up_decodes_plainly() -> None:
    speed, drafted, accepted, passes = replay([1, 2, 3], list(range(10, 40)), DraftPolicy(8), COST)
    assert (drafted, accepted, passes) == (0, 0, 29) and speed == 1.0


def test_a_draft_never_runs_past_the_text() -> None:
    # The last token: no draft may be verified beyond the answer's end.
    prompt = [5, 6, 7, 8, 9, 5, 6]
    speed, drafted, accepted, passes = replay(prompt, [7, 8], DraftPolicy(8), COST)
    assert (drafted, passes) == (0, 1)
