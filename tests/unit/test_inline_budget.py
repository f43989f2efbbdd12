"""Fitting an inline prompt to the time cap: measured speeds, the KV cache's likely content."""

from __future__ import annotations

from mlxd.models.budget import LINE_TOKENS, SAFETY, RecentPrompts, SpeedMeter, fits


def test_new_tokens_leave_room_for_one_line() -> None:
    meter = SpeedMeter(prefill_tps=300.0, decode_tps=5.0)
    # 1.5 s * 0.8 = 1.2 s; the answer's tokens at 5 tok/s take longer: no room for a prompt.
    assert LINE_TOKENS / 5.0 > 1.5 * SAFETY
    assert meter.new_tokens_within(1.5) == 0
    meter = SpeedMeter(prefill_tps=300.0, decode_tps=50.0)
    left = 1.5 * SAFETY - LINE_TOKENS / 50.0
    assert meter.new_tokens_within(1.5) == int(left * 300)


def test_faster_machine_buys_more_context() -> None:
    slow, fast = SpeedMeter(100.0, 20.0), SpeedMeter(1000.0, 100.0)
    assert fast.new_tokens_within(1.5) > 10 * slow.new_tokens_within(1.5) > 0


def test_measurements_move_the_estimate_and_tiny_samples_are_ignored() -> None:
    meter = SpeedMeter(prefill_tps=250.0, decode_tps=10.0)
    meter.observe_prefill(8, 1.0)  # too few tokens: the first decode step dominates
    assert meter.prefill_tps == 250.0
    for _ in range(20):
        meter.observe_prefill(500, 5.0)  # a loaded machine: 100 tok/s
        meter.observe_decode(20, 4.0)  # 5 tok/s
    assert abs(meter.prefill_tps - 100.0) < 1 and abs(meter.decode_tps - 5.0) < 0.1


def test_cached_prefix_counts_as_free() -> None:
    recent = RecentPrompts(size=2)
    recent.add([1, 2, 3, 4, 5])
    assert recent.cached([1, 2, 3, 9]) == 3
    assert fits(total=100, cached=90, allowed_new=10)
    assert not fits(total=100, cached=89, allowed_new=10)
    recent.add([7, 8])
    recent.add([9])  # the oldest prompt is forgotten
    assert recent.cached([1, 2, 3]) == 0


def test_the_first_measurement_replaces_the_guess() -> None:
    meter = SpeedMeter(prefill_tps=250.0, decode_tps=10.0)
    meter.observe_prefill(100, 10.0)  # a machine 25x slower than guessed
    meter.observe_decode(10, 5.0)
    assert (meter.prefill_tps, meter.decode_tps) == (10.0, 2.0)
    meter.observe_prefill(200, 10.0)  # later ones move it by ALPHA
    assert 10.0 < meter.prefill_tps < 20.0


def test_a_time_capped_window_does_not_move_with_small_speed_changes() -> None:
    # Consecutive requests measure slightly other speeds; their capped prompts must start on the
    # same line, or the KV cache holds only the header (bench typing reused 7-13 tokens).
    from mlxd.models import MIN_PROMPT_TOKENS, prompt_step

    assert {prompt_step(n) for n in (260, 300, 383, 511)} == {256}
    assert prompt_step(512) == 512 and prompt_step(1023) == 512
    assert prompt_step(0) == prompt_step(MIN_PROMPT_TOKENS) == MIN_PROMPT_TOKENS
    assert all(
        MIN_PROMPT_TOKENS <= prompt_step(n) <= max(n, MIN_PROMPT_TOKENS) for n in range(2000)
    )


def test_the_first_decode_step_is_not_counted_as_prefill() -> None:
    # The time to a first token is the prefill plus one decode step; the step is planned for
    # with the line, so it must not also slow the prefill estimate (48 tokens at 500 tok/s and
    # a 50 ms step looked like 330 tok/s).
    meter = SpeedMeter(prefill_tps=250.0, decode_tps=20.0)
    meter.observe_first_token(48, 48 / 500 + 1 / 20)
    assert abs(meter.prefill_tps - 500.0) < 1
    # A step slower than the whole time (a first guess far off) never makes it negative.
    meter = SpeedMeter(prefill_tps=250.0, decode_tps=2.0)
    meter.observe_first_token(100, 0.2)
    assert meter.prefill_tps == 1000.0
