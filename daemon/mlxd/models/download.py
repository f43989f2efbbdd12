"""Fetch a Hugging Face model repo into the HF cache: byte progress, cancel, a clear offline error.

    path = fetch("mlx-community/X-4bit", on_bytes=lambda done, total: ..., stop=threading.Event())

Runs on a worker thread, not the MLX thread (a 1-4 GB download takes minutes). huggingface_hub
reads HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, the proxy and the CA bundle from the
process environment (some at import): a shared daemon downloads for a window in a child process
of that window's environment (hub_child.py). A
cancelled or failed download leaves no partial file in the cache: huggingface_hub writes each file to a uniquely named temporary, renames it into place once it is
whole and deletes it otherwise (so the next try starts that file again), and an offline load
never takes a partial snapshot for a whole one (it checks the cached file list).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:
    from .hub_env import WindowEnv

# (bytes done, bytes total; total 0 while unknown), at most every REPORT_INTERVAL_S.
BytesFn = Callable[[int, int], None]
REPORT_INTERVAL_S = 0.1
# huggingface_hub reads the body in 10 MiB pieces: progress and the stop flag would move in
# 10 MiB steps. 256 KiB keeps both responsive for one Python call per piece.
CHUNK_BYTES = 256 * 1024


class LoadCancelled(ModelError):
    """The client cancelled the load (its work-done progress) while it was running."""


def fetch(
    repo: str,
    *,
    on_bytes: BytesFn | None = None,
    stop: threading.Event | None = None,
    hub: WindowEnv | None = None,
    patterns: list[str] | None = None,
) -> Path:
    """The snapshot directory of `repo` (an mlx-lm repo id), downloaded unless already cached;
    `hub`: the window that asks (a shared daemon: the download runs in a child process of
    its environment, in its working directory, hub_child.py); None: this process's. `patterns`: the
    files to fetch (default: mlx-lm's).

    Raises LoadCancelled once `stop` is set (checked at every piece received), and ModelError
    with a user-facing message for everything else (offline, unknown repo, gated repo, disk).
    """
    if patterns is None:
        from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

        patterns = list(DEFAULT_ALLOW_PATTERNS)
    on_bytes, stop = on_bytes or (lambda _d, _t: None), stop or threading.Event()
    if hub is not None:
        from .hub_child import fetch_in

        return fetch_in(hub, repo, patterns, on_bytes, stop)
    import huggingface_hub.constants as hf_constants
    from huggingface_hub import snapshot_download

    hf_constants.DOWNLOAD_CHUNK_SIZE = min(hf_constants.DOWNLOAD_CHUNK_SIZE, CHUNK_BYTES)
    meter = _Meter(on_bytes, stop, repo)
    options: dict[str, Any] = {"allow_patterns": patterns}
    try:
        meter.planned = _bytes_to_download(snapshot_download, repo, options, meter)
        return Path(snapshot_download(repo, tqdm_class=meter.bar_class(), **options))
    except LoadCancelled:
        raise
    except Exception as exc:
        if meter.stop.is_set():  # a piece in flight failed because we stopped it
            raise LoadCancelled(cancelled_message(repo)) from exc
        raise ModelError(explain(repo, exc, hf_constants.ENDPOINT)) from exc


def _bytes_to_download(download: Any, repo: str, options: dict[str, Any], meter: _Meter) -> int:
    """What is left to fetch, from a dry run (file list + sizes): snapshot_download's own byte
    total grows file by file as downloads start, so its first file done would read as 100%.
    0 when unknown (offline: the real call then finds the cache or says what is wrong)."""
    try:
        plan = download(repo, dry_run=True, tqdm_class=meter.bar_class(), **options)
    except LoadCancelled:
        raise
    except Exception:
        meter.check()  # the dry run failed because we closed its connection
        return 0
    return sum(f.file_size or 0 for f in plan if f.will_download)


def cancelled_message(spec: str) -> str:
    return f"loading {spec} was cancelled; the next request that needs it starts it again"


def progress_message(repo: str, done: int, total: int) -> str:
    """ "downloading mlx-community/X: 312 / 1,024 MB (30%)" (MB = 10^6 bytes)."""
    if total <= 0:
        return f"downloading {repo}: {done / 1e6:,.0f} MB"
    return f"downloading {repo}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB ({done * 100 // total}%)"


def explain(repo: str, exc: BaseException, endpoint: str) -> str:
    """One message a user can act on, for a failed snapshot_download."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return (
            f"cannot download {repo}: the repo is gated on Hugging Face; accept its terms on the "
            "website and log in (`hf auth login`), or point local.model at a local mlx-lm directory"
        )
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError):
        return (
            f"{repo} is no local path and no Hugging Face model repo ({endpoint} has no such "
            "repo, or it is private): check the name, or point local.model at an mlx-lm directory"
        )
    if (http := _in_chain(exc, HfHubHTTPError)) is not None and http.response is not None:
        return (
            f"cannot download {repo}: {endpoint} answered HTTP {http.response.status_code} "
            "(the Hub may be down: try again later), and the model is not in the Hugging Face "
            "cache; or point local.model at a local mlx-lm directory"
        )
    if isinstance(exc, LocalEntryNotFoundError) or _is_connection_error(exc):
        return (
            f"cannot download {repo}: this machine is offline (no connection to {endpoint}, or "
            "HF_HUB_OFFLINE is set) and the model is not in the Hugging Face cache. Download it "
            f"once while online (`hf download {repo}`, or let mlxd fetch it on first use), or "
            "point local.model at a local mlx-lm directory"
        )
    if isinstance(exc, OSError):
        return f"cannot download {repo} into the Hugging Face cache: {exc}"
    return f"cannot download {repo} from Hugging Face: {type(exc).__name__}: {exc}"


def _in_chain(exc: BaseException | None, cls: type[Any]) -> Any:
    """The first exception of type `cls` in `exc`'s cause chain, or None."""
    for _ in range(10):
        if exc is None or isinstance(exc, cls):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _is_connection_error(exc: BaseException | None) -> bool:
    """A refused connection, a DNS failure or a timeout, however deep in the cause chain."""
    seen = 0
    while exc is not None and seen < 10:
        name = type(exc).__name__
        if isinstance(exc, ConnectionError | TimeoutError) or name in (
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "RemoteProtocolError",
            "OfflineModeIsEnabled",
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class DownloadThreads:
    """One daemon thread per download: the process never waits at exit for a download that is
    stuck on the network (asyncio's default executor would keep it alive until it ends)."""

    def __init__(self) -> None:
        self.threads: set[threading.Thread] = set()

    def start(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        def run() -> None:
            result, error = None, None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            finally:
                self.threads.discard(threading.current_thread())
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        thread = threading.Thread(target=run, name="mlxd-download", daemon=True)
        self.threads.add(thread)
        thread.start()
        return fut

    def interrupt(self) -> None:
        """Close huggingface_hub's HTTP connections, so a download blocked on a slow read fails
        now (and deletes its partial file) instead of at its next piece. Call after setting the
        stop flags: the failure then reads as the cancel it is."""
        if self.threads:
            from huggingface_hub import close_session

            close_session()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in list(self.threads):
            thread.join(max(0.0, deadline - time.monotonic()))


class _Meter:
    """Counts the bytes written to disk across every file of one snapshot_download."""

    def __init__(self, on_bytes: BytesFn, stop: threading.Event, repo: str) -> None:
        self.on_bytes, self.stop, self.repo = on_bytes, stop, repo
        self.done = self.total = 0
        self.planned = 0  # the dry run's byte total, when known: it wins over self.total
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, done: int = 0, total: int = 0) -> None:
        """Count `done` more bytes written and `total` more expected; report when due (under
        the lock, so reports from the download threads arrive in order)."""
        with self._lock:
            self.done += done
            self.total += total
            expected = self.planned or self.total
            now = time.monotonic()
            due = now - self._last >= REPORT_INTERVAL_S or 0 < expected <= self.done
            if done and due:
                self._last = now
                self.on_bytes(self.done, expected)

    def check(self) -> None:
        if self.stop.is_set():
            raise LoadCancelled(cancelled_message(self.repo))

    def bar_class(self) -> type:
        meter = self

        class Bar(_Bar):
            pass

        Bar.meter = meter
        return Bar


class _Bar:
    """What snapshot_download needs of a tqdm class, reporting to a _Meter instead of a terminal.

    snapshot_download opens three bars: files done (no unit), network bytes (its total is a
    guess: the format shows no total) and bytes written (unit "B", total grown per file). Only
    the last one is counted, so each byte counts once.
    """

    meter: _Meter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fmt = kwargs.get("bar_format") or "{total"
        self.counts = kwargs.get("unit") == "B" and "{total" in fmt
        self.n = kwargs.get("initial") or 0
        self._total = 0
        self.total = kwargs.get("total") or 0
        self.meter.check()

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        grow, self._total = (value or 0) - self._total, value or 0
        if self.counts and grow:
            self.meter.add(total=grow)

    def update(self, n: int | float | None = 1) -> None:
        self.meter.check()
        self.n += int(n or 0)
        if self.counts:
            self.meter.add(done=int(n or 0))

    @property
    def format_dict(self) -> dict[str, Any]:
        return {"rate": None, "n": self.n, "total": self.total}

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        pass

    refresh = close = set_description = set_description_str = _ignore
    set_postfix = set_postfix_str = clear = _ignore
