"""OpenBLAS threads sized to the cores other processes leave free (models/blas_threads.py):
the decision, and the adjuster driven by a fake OpenBLAS, load average and clock (no timing)."""

from __future__ import annotations

import pytest

from mlxd.models import blas_threads
from mlxd.models.blas_threads import CHECK_S, BlasThreads, wanted


@pytest.mark.parametrize(
    ("load", "ours", "cores", "most", "threads"),
    [
        (0.0, 0, 2, 2, 2),  # quiet: OpenBLAS's own count
        (2.0, 2, 2, 2, 2),  # only our own two threads: still quiet
        (2.4, 2, 2, 2, 2),  # others take 0.4 of a core: both stay
        (3.0, 2, 2, 2, 1),  # one other busy process on two cores
        (12.0, 2, 2, 2, 1),  # the shared box: never below one
        (12.0, 1, 2, 2, 1),
        (1.2, 1, 2, 2, 2),  # the others left: back to two
        (5.0, 4, 8, 8, 7),  # eight cores, one taken by others
        (4.0, 0, 8, 8, 4),
        (0.0, 0, 16, 8, 8),  # never above OpenBLAS's own count
    ],
)
def test_threads_are_the_cores_the_others_leave_free(load, ours, cores, most, threads) -> None:
    assert wanted(load, ours, cores, most) == threads


class FakeOpenBLAS:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.calls: list[int] = []

    def openblas_get_num_threads(self) -> int:
        return self.threads

    def openblas_set_num_threads(self, n: int) -> None:
        self.calls.append(n)
        self.threads = n


def adjuster(lib: FakeOpenBLAS, load: list[float], now: list[float], synced: list[int]):
    return BlasThreads(
        lib,
        loadavg=lambda: (load[0], 0.0, 0.0),
        cores=2,
        clock=lambda: now[0],
        sync=lambda: synced.append(lib.threads),
    )


def test_busy_cores_take_one_thread_and_free_ones_give_it_back() -> None:
    lib, load, now, synced = FakeOpenBLAS(2), [12.0], [100.0], []
    b = adjuster(lib, load, now, synced)
    b.adjust()
    assert (lib.calls, synced) == ([1], [2])  # synchronized before the change
    load[0] = 1.0  # the others are gone (our one thread remains)
    b.adjust()
    assert lib.calls == [1]  # not before CHECK_S
    now[0] += CHECK_S
    b.adjust()
    assert (lib.calls, b.changes) == ([1, 2], 2)


def test_no_change_no_call() -> None:
    lib, synced = FakeOpenBLAS(2), []
    b = adjuster(lib, [2.0], [0.0], synced)
    b.adjust()
    assert (lib.calls, synced, b.current) == ([], [], 2)


def test_without_openblas_or_with_one_thread_nothing_happens() -> None:
    BlasThreads(None, loadavg=lambda: (12.0, 0.0, 0.0)).adjust()  # no library: no call to fail
    lib = FakeOpenBLAS(1)
    adjuster(lib, [12.0], [0.0], []).adjust()
    assert lib.calls == []


def test_a_count_the_user_set_is_left_alone(monkeypatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert blas_threads._openblas() is None


def test_a_failing_adjust_never_fails_the_work(monkeypatch) -> None:
    class Broken(FakeOpenBLAS):
        def openblas_set_num_threads(self, n: int) -> None:
            raise OSError("no such thing")

    monkeypatch.setattr(blas_threads, "_instance", adjuster(Broken(2), [12.0], [0.0], []))
    blas_threads.fit_blas_threads()  # no exception: adjusting is off from now on
    assert blas_threads._instance is not None and blas_threads._instance.lib is None
