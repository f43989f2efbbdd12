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
