"""The model loads in flight in a pool: how each one is stopped, and a load nobody waits for.

Each load has a stop flag (its download and weight-reading threads check it), a future its
waiters watch (set: they stop waiting at once) and the download identity it runs with
(hub_env.WindowEnv.identity: a shared daemon downloads in a child process of the environment
of the window that started the load; None: this process's own).

A load is an *orphan* when no open window that names its model shares that identity (the
windows it ran for have all closed). It goes on for a grace period, so that a Reload Window
(the same window, the same environment, a few seconds later) finds its download where it was,
then it is stopped (LoadOrphaned), and whoever still waits for the model starts it again with
its own environment. A window of another identity never takes over an orphan: it is stopped at
once for that window (a closed window's token, proxy and cache do not serve another one).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any

from .download import LoadCancelled, cancelled_message


class LoadOrphaned(LoadCancelled):
    """The load ran for windows that have all closed: a waiter of another download identity
    starts it again as its own (`identity`: the stopped load's; its own waiters are those of
    the closed windows)."""

    identity: Hashable = None


@dataclass(eq=False)
class Load:
    stop: threading.Event
    stopped: asyncio.Future[type[LoadCancelled]]
    identity: Hashable
    grace: asyncio.TimerHandle | None = None  # set while an orphan


class InFlight:
    def __init__(self) -> None:
        self.loads: dict[str, Load] = {}

    def begin(self, spec: str, identity: Hashable) -> threading.Event:
        """A load of `spec` starts, with the download identity `identity`: its stop flag."""
        loop = asyncio.get_running_loop()
        load = self.loads[spec] = Load(threading.Event(), loop.create_future(), identity)
        return load.stop

    def end(self, spec: str) -> None:
        load = self.loads.pop(spec, None)
        if load is not None and load.grace is not None:
            load.grace.cancel()

    def stop(self, specs: list[str], why: type[LoadCancelled] = LoadCancelled) -> None:
        """Set the stop flags of `specs`' loads; their waiters get `why` at once."""
        for spec in specs:
            load = self.loads[spec]
            load.stop.set()
            if load.grace is not None:
                load.grace.cancel()
                load.grace = None
            if not load.stopped.done():
                load.stopped.set_result(why)

    async def until_stopped(self, spec: str, work: asyncio.Future[Any]) -> Any:
        """`work`'s result, or the stop's exception as soon as stop() is called (the thread
        finishes on its own: its read fails, or it sees the flag at its next piece or step)."""
        stopped = self.loads[spec].stopped
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.add_done_callback(_consume)
            why = stopped.result()
            if why is not LoadOrphaned:
                raise why(cancelled_message(spec))
            exc = LoadOrphaned(orphaned_message(spec))
            exc.identity = self.loads[spec].identity
            raise exc
        return work.result()

    def orphan(
        self,
        is_orphan: Callable[[str, Hashable], bool],
        grace_s: float,
        closed: Collection[tuple[str, Hashable]] = (),
    ) -> None:
        """Each load that `is_orphan(spec, identity)` says nobody waits for is stopped after
        `grace_s` seconds, unless by then a window of its identity names it again (asked
        again then). A grace already running is restarted only by the close of a window that
        named the load, (spec, identity) in `closed` (a reload that closed again): another
        window's close neither lengthens a closed window's download nor keeps it going."""
        for spec, load in self.loads.items():  # none: no event loop needed (a unit test)
            if not load.stop.is_set() and is_orphan(spec, load.identity):
                if load.grace is not None:
                    if (spec, load.identity) not in closed:
                        continue
                    load.grace.cancel()
                loop = asyncio.get_running_loop()
                load.grace = loop.call_later(grace_s, self._expire, spec, load, is_orphan)

    def _expire(self, spec: str, load: Load, is_orphan: Callable[[str, Hashable], bool]) -> None:
        load.grace = None
        if self.loads.get(spec) is load and is_orphan(spec, load.identity):
            self.stop([spec], LoadOrphaned)

    def foreign_orphan(self, spec: str, identity: Hashable) -> bool:
        """Whether `spec`'s load is an orphan of another identity than `identity`'s."""
        load = self.loads.get(spec)
        return load is not None and load.grace is not None and load.identity != identity


def orphaned_message(spec: str) -> str:
    return f"stopped loading {spec}: the windows it was loading for have closed"


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of work nobody waits for any more (no "never retrieved" noise)."""
    if not fut.cancelled():
        fut.exception()
