"""OpenBLAS threads sized to the cores other processes leave free (the Linux CPU path, where
mlxd preloads OpenBLAS: mlxd/blas.py).

OpenBLAS splits each matrix product over its threads and waits for all of them, spinning. When
other processes keep the cores busy, one descheduled thread stalls every product: on the 2-core
box at a load average of 11-12, a 128-token prefill of the embedded model took 15.6-16.9 s with
2 threads and 1.5-2.5 s with 1, a decode step 1.4-2.6 s against 0.3-0.5 s. So the MLX thread
uses as many threads as there are cores the others leave free (the 1-minute load average less
our own threads, rounded), at least 1 and at most OpenBLAS's own count: on a quiet machine
nothing changes. An OPENBLAS_NUM_THREADS the user set is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHECK_S = 2.0  # the load average moves over a minute: looking more often gains nothing


def wanted(load: float, ours: int, cores: int, most: int) -> int:
    """Threads for a 1-minute load average `load` of which `ours` are this process's BLAS
    threads, on `cores` cores: the cores the other processes leave free, in 1..`most`."""
    others = max(0.0, load - ours)
    return max(1, min(most, round(cores - others)))


class BlasThreads:
    """Adjusts OpenBLAS's thread count now and then; `adjust` runs on the MLX thread between
    pieces of work (the only thread that calls BLAS)."""

    def __init__(
        self,
        lib: Any = None,
        *,
        loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
        cores: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self.lib = lib
        self.loadavg, self.clock, self.sync = loadavg, clock, sync
        self.cores = cores or os.cpu_count() or 1
        self.most = self.current = int(lib.openblas_get_num_threads()) if lib else 1
        self.changes = 0
        self._next = 0.0

    def adjust(self) -> None:
        """Set the thread count the load asks for (at most once every CHECK_S)."""
        now = self.clock()
        if self.lib is None or self.most <= 1 or now < self._next:
            return
        self._next = now + CHECK_S
        n = wanted(self.loadavg()[0], self.current, self.cores, self.most)
        if n == self.current:
            return
        if self.sync is not None:
            self.sync()  # no product of an earlier step may still run on the old threads
        self.lib.openblas_set_num_threads(n)
        self.current = n
        self.changes += 1


def _openblas() -> Any:
    """The process's OpenBLAS (preloaded, so its symbols are global), or None: no OpenBLAS,
    or the user fixed its thread count."""
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
        lib.openblas_get_num_threads.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def _sync() -> None:
    import mlx.core as mx

    mx.synchronize()


_instance: BlasThreads | None = None


def fit_blas_threads() -> None:
    """On the MLX thread, before a piece of work: OpenBLAS threads for the current load. A
    failure turns the adjusting off (logged once): the work itself must not fail for it."""
    global _instance
    try:
        if _instance is None:
            _instance = BlasThreads(_openblas(), sync=_sync)
        _instance.adjust()
    except Exception as exc:
        log.warning("OpenBLAS threads are no longer adjusted to the load: %s", exc)
        _instance = BlasThreads(None)


def openblas_threads() -> int | None:
    """OpenBLAS's thread count as last set for the MLX thread; None before any local work, or
    when it is not adjusted (no OpenBLAS, or OPENBLAS_NUM_THREADS set by the user)."""
    inst = _instance
    return inst.current if inst is not None and inst.lib is not None else None
