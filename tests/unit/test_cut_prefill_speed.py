"""A prefill stopped before its first token still teaches the local backend its prefill speed
(issue #17 item 3): otherwise a first guess too fast for the machine is never corrected under
a hard inline bound, and every inline request is cut before it answers."""

from __future__ import annotations

from mlxd.backends.local import LocalBackend
from mlxd.models import Job


def _job(prefilled: int, reused: int = 0) -> Job:
    job = Job(tokens=list(range(200)), max_tokens=4, temperature=0.0, stop=[], emit=print)
    job.reused, job.prefilled = reused, prefilled
    return job


def _backend() -> LocalBackend:
    return LocalBackend("local", "unused", pool=None)  # type: ignore[arg-type]


def test_the_progress_of_a_cut_prefill_is_a_speed_measurement() -> None:
    b = _backend()
    b._observe_cut(_job(prefilled=128 + 40, reused=40), by_deadline=False, seconds=2.0)
    assert (b.speed.prefill_tps, b.speed.samples) == (64.0, 1)


def test_a_deadline_cut_with_no_progress_bounds_the_speed_from_above() -> None:
    b = _backend()
    b._observe_cut(_job(prefilled=0), by_deadline=True, seconds=4.0)
    assert (b.speed.prefill_tps, b.speed.samples) == (50.0, 1)  # 200 tokens not done in 4 s


def test_a_request_superseded_before_any_progress_teaches_nothing() -> None:
    b = _backend()
    guess = b.speed.prefill_tps
    b._observe_cut(_job(prefilled=0), by_deadline=False, seconds=0.05)
    assert (b.speed.prefill_tps, b.speed.samples) == (guess, 0)


def test_the_wait_for_a_background_chunk_and_the_first_step_are_not_prefill() -> None:
    # Issue #16: after didOpen a warm-up's prefill chunk is in flight when the first request
    # comes; the request waits for it, then prefills 48 tokens (at 500 tok/s here) and decodes
    # its first token (one 50 ms step, which the time fit plans for with the line). Counted as
    # prefill, the wait and the step made the machine look 7x slower, and the next prompt was
    # cut to the 48-token minimum.
    b = _backend()
    b.speed.decode_tps = 20.0
    job = _job(prefilled=0, reused=152)  # 48 of its 200 prompt tokens to prefill
    job.started = 10.0 + 0.5  # taken from the queue after a 0.5 s chunk of a warm-up
    b._observe_first(job, submitted=10.0, first=job.started + 48 / 500 + 1 / 20)
    assert abs(b.speed.prefill_tps - 500.0) < 1
    assert b.speed.new_tokens_within(1.45, 8) > 250  # was 48 / 0.646 s: 74 tok/s, 46 tokens


def test_a_background_first_token_teaches_nothing() -> None:
    b = _backend()
    job = _job(prefilled=0)
    job.background = True
    b._observe_first(job, submitted=0.0, first=0.1)
    assert b.speed.samples == 0


def test_a_warm_up_stopped_part_way_counts_only_its_prefilled_start_as_cached() -> None:
    # Issue #16: a request stops the didOpen warm-up; the time fit then must not plan with the
    # warm-up's whole prompt in the KV cache (it chose 638-token windows with 198 cached).
    b = _backend()
    warm = Job(tokens=list(range(1000)), max_tokens=0, temperature=0.0, stop=[], emit=print)
    warm.background, warm.prefilled = True, 192
    b.recent.add(warm.tokens)
    b._unfilled(warm)
    assert b.recent.cached(list(range(638))) == 192
    # A finished warm-up, or an answer's prompt, stays cached whole.
    done = Job(tokens=list(range(2000, 2300)), max_tokens=0, temperature=0.0, stop=[], emit=print)
    done.background, done.prefilled = True, 300
    b.recent.add(done.tokens)
    b._unfilled(done)
    assert b.recent.cached(list(range(2000, 2300))) == 300
