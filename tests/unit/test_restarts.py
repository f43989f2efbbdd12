"""starting.Restarts: how many short-lived servers in a row a window has had, and the pause
before the next start (issue #19 item 5: a crash loop costs a few starts, a kill -9 none).
A clock of the test's own: no timing."""

from __future__ import annotations

from mlxd.cli.connect import CRASH_LOOP_DEATHS, MAX_RETRY_S, RETRY_S, SHORT_LIVED_S, Restarts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deaths_soon_after_being_given_the_window_count_up_and_pause_longer() -> None:
    clock = Clock()
    r = Restarts(clock)
    pauses = []
    for n in range(1, 8):
        clock.now += 0.5
        assert r.died() == n
        pauses.append(r.pause_s())
        r.given()
    assert pauses[0] == 0.0  # one death (a kill -9): the next daemon at once
    assert pauses[1] == RETRY_S
    assert all(b == min(MAX_RETRY_S, 2 * a) for a, b in zip(pauses[1:], pauses[2:], strict=False))
    assert CRASH_LOOP_DEATHS <= 7


def test_a_server_that_lived_long_resets_the_count() -> None:
    clock = Clock()
    r = Restarts(clock)
    clock.now += 1
    assert r.died() == 1
    r.given()
    clock.now += 1
    assert r.died() == 2
    r.given()
    clock.now += SHORT_LIVED_S + 1  # served the window a while: its death is not of the state
    assert r.died() == 0 and r.pause_s() == 0.0
    r.given()
    clock.now += 1
    assert r.died() == 1 and r.pause_s() == 0.0


def test_the_first_server_counts_from_the_start() -> None:
    clock = Clock()
    r = Restarts(clock)
    clock.now += SHORT_LIVED_S + 1
    assert r.died() == 0
