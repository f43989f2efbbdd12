"""A verify pass's greedy pick skips the logsumexp only where it cannot change the pick: the
pick is always mlx-lm's greedy sampler's on the log-probabilities (what plain decoding does)."""

from __future__ import annotations

import math

import mlx.core as mx
import pytest
from mlx_lm.sample_utils import make_sampler

from mlxd.models.speculative import greedy_tokens, tie_margin

VOCABULARY = 49_152  # the embedded model's


def mlx_lm_greedy(logits: mx.array) -> list[int]:
    """What BatchGenerator's plain step picks at temperature 0."""
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return make_sampler(temp=0.0)(logprobs).tolist()


def near_tie(top_at: int, runner_up_at: int, dtype: mx.Dtype = mx.float32) -> mx.array:
    """One row whose runner-up comes first and is a quarter of `dtype`'s spacing below the
    top at the log-probabilities' scale (~-8.5: float32's spacing there is 2^-20), so both
    round to one log-probability: the sampler picks the runner-up, the logits' argmax the top."""
    row = mx.full((VOCABULARY,), -30.0)
    row[:8000] = -0.5  # logsumexp ~ 8.5 above the top: log-probabilities near -8.5
    row[top_at] = 0.0
    row[runner_up_at] = -(mx.finfo(dtype).eps * 8 / 4)  # a quarter of the spacing at 8..16
    return row[None].astype(dtype)


def test_rows_without_a_near_tie_get_the_samplers_pick() -> None:
    mx.random.seed(7)
    logits = mx.random.normal((64, VOCABULARY)) * 4
    assert greedy_tokens(logits) == mlx_lm_greedy(logits)
    assert greedy_tokens(logits) == mx.argmax(logits, axis=-1).tolist()


def test_a_runner_up_that_rounds_to_the_top_is_picked_as_the_sampler_picks_it() -> None:
    tie = near_tie(top_at=4009, runner_up_at=4005)
    assert mlx_lm_greedy(tie) == [4005]  # the premise: the log-probabilities tie
    assert mx.argmax(tie, axis=-1).tolist() == [4009]
    assert greedy_tokens(tie) == [4005]
    # In a pass of several rows, the tie of one row changes none of the others.
    mx.random.seed(3)
    rows = mx.concatenate([mx.random.normal((2, VOCABULARY)) * 4, tie], axis=0)
    assert greedy_tokens(rows) == mlx_lm_greedy(rows)
    assert greedy_tokens(rows)[-1] == 4005


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16])
def test_half_precision_ties_are_found_at_their_own_spacing(dtype: mx.Dtype) -> None:
    tie = near_tie(top_at=4009, runner_up_at=4005, dtype=dtype)
    assert mlx_lm_greedy(tie) == [4005] and mx.argmax(tie, axis=-1).tolist() == [4009]
    assert greedy_tokens(tie) == [4005]


def test_only_a_pass_with_a_near_tie_computes_the_logsumexp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    logsumexp = mx.logsumexp
    monkeypatch.setattr(mx, "logsumexp", lambda *a, **k: calls.append(1) or logsumexp(*a, **k))
    mx.random.seed(11)
    greedy_tokens(mx.random.normal((3, VOCABULARY)) * 4)
    assert calls == []
    greedy_tokens(near_tie(top_at=4009, runner_up_at=4005))
    assert calls == [1]


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_rows_with_nan_or_infinite_logits_get_the_samplers_pick(special: float) -> None:
    mx.random.seed(5)
    logits = mx.random.normal((3, VOCABULARY))
    logits[1, 17] = special
    logits[2, :] = special if special != math.inf else -math.inf
    assert greedy_tokens(logits) == mlx_lm_greedy(logits)


def test_the_margin_covers_the_spacing_of_log_probabilities_near_the_top() -> None:
    """The top's log-probability is in [-log(vocabulary), 0]: the float32 spacing there is at
    most 2^-20 (for 49,152); the margin is wider, and wider still for half precision."""
    spacing = 2.0 ** (math.floor(math.log2(math.log(VOCABULARY))) - 23)
    assert tie_margin(VOCABULARY, mx.float32) >= 4 * spacing
    assert tie_margin(VOCABULARY, mx.bfloat16) > tie_margin(VOCABULARY, mx.float32) * 1000
