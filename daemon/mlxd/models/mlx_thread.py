"""The process's one MLX thread.

All MLX work runs on a single thread: MLX streams are thread-local, and one owner keeps model
memory and caches consistent. The thread is a daemon that never ends before the process does:
MLX aborts at exit ("terminate called without an active exception") when a thread that used its
streams has finished before MLX's static destructors run -- which is what joining a
ThreadPoolExecutor's worker would do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .blas_threads import fit_blas_threads


class MLXThread(Executor):
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple, dict]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="mlxd-mlx", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._queue.put((fut, fn, args, kwargs))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Wait for the work submitted so far; the thread itself stays parked (see above)."""
        if wait:
            self.submit(lambda: None).result()

    def _run(self) -> None:
        while True:
            fut, fn, args, kwargs = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fit_blas_threads()  # the cores other processes leave free (blas_threads.py)
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to whoever waits on the future
                fut.set_exception(exc)


_instance: MLXThread | None = None
_lock = threading.Lock()


def mlx_thread() -> MLXThread:
    """The shared MLX thread, started on first use."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = MLXThread()
        return _instance
