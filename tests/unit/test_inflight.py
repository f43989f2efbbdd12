"""The loads in flight of a model pool: a load no open window of its environment names any
more is stopped after its grace (issue #19, attack5 finding 4), unless a window of its
environment names it again by then; a window of another environment never joins it. Orders of
events on a real event loop, no clock asserted (a grace of 0 expires at the loop's next turn)."""

from __future__ import annotations

import asyncio

from mlxd.models.download import LoadCancelled
from mlxd.models.inflight import InFlight, LoadOrphaned


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_orphan_is_stopped_after_its_grace_and_its_waiters_told_why() -> None:
    loads = InFlight()
    stop = loads.begin("m", "env-a")
    work = asyncio.get_running_loop().create_future()
    waiter = asyncio.ensure_future(loads.until_stopped("m", work))
    loads.orphan(lambda spec, who: True, 0)
    assert not stop.is_set() and loads.foreign_orphan("m", "env-b")
    assert not loads.foreign_orphan("m", "env-a")  # the same window, reloaded: joins it
    await turns()
    assert stop.is_set()
    try:
        await waiter
    except LoadOrphaned as exc:
        assert exc.identity == "env-a" and "closed" in exc.message
    else:
        raise AssertionError("the waiter was not told")


async def test_an_orphan_named_again_within_its_grace_goes_on() -> None:
    loads = InFlight()
    stop = loads.begin("m", "env-a")
    wanted = {("m", "env-b")}
    loads.orphan(lambda spec, who: (spec, who) not in wanted, 0)
    wanted.add(("m", "env-a"))  # the window reopened before the grace ran out
    await turns()
    assert not stop.is_set() and not loads.foreign_orphan("m", "env-b")
    loads.orphan(lambda spec, who: False, 0)  # nobody left it: not an orphan
    await turns()
    assert not stop.is_set()


async def test_a_cancel_is_not_an_orphan_and_an_ended_load_has_no_grace_left() -> None:
    loads = InFlight()
    loads.begin("m", None)
    work = asyncio.get_running_loop().create_future()
    waiter = asyncio.ensure_future(loads.until_stopped("m", work))
    loads.orphan(lambda spec, who: True, 3600)
    loads.stop(["m"])  # the user's cancel
    try:
        await waiter
    except LoadOrphaned:
        raise AssertionError("a cancel read as an orphan") from None
    except LoadCancelled:
        pass
    assert loads.loads["m"].grace is None
    loads.end("m")
    assert "m" not in loads.loads
