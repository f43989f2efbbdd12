"""Warm local models: one MLX thread, shared loads, LRU eviction under a budget, idle unload.

Every MLX operation of the daemon runs on the pool's single thread (MLX streams are
thread-local). A model is loaded once however many requests wait for it; a failed load gives
every waiter the same error and the next request tries again. Models stay loaded until the
memory budget needs room (least recently used first, never one that is generating) or until
they have been idle for `idle_unload_s`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Hashable
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .batching import BatchEngine
from .download import DownloadThreads, LoadCancelled, cancelled_message, fetch, progress_message
from .entry import Entry, draft_role
from .inflight import InFlight, LoadOrphaned
from .mlx_thread import mlx_thread
from .specs import is_hf_repo

if TYPE_CHECKING:
    from .hub_env import WindowEnv

log = logging.getLogger(__name__)

# Share of a load's progress that a Hugging Face download takes (the rest: reading the weights).
DOWNLOAD_SHARE = 0.9
# At exit, how long a cancelled download may take to delete its partial file.
DOWNLOAD_EXIT_WAIT_S = 0.5

# (spec, fraction 0..1, message) while loading.
ProgressFn = Callable[[str, float, str], None]
# (spec, event, message): event is loading | ready | error | cancelled | unloaded.
EventFn = Callable[[str, str, str], None]


class ModelPool:
    def __init__(
        self,
        *,
        memory_limit_gb: float = 0.0,
        idle_unload_s: float = 0.0,
        prompt_cache_mb: int = 512,
        speculative: str = "auto",
        draft_tokens: int = 8,
        on_progress: ProgressFn | None = None,
        on_event: EventFn | None = None,
    ) -> None:
        self.executor = mlx_thread()
        self.memory_limit_gb = memory_limit_gb
        self.idle_unload_s = idle_unload_s
        self.prompt_cache_mb = prompt_cache_mb
        self.speculative = speculative
        self.draft_tokens = draft_tokens
        self.on_progress = on_progress or (lambda s, f, m: None)
        self.on_event = on_event or (lambda s, e, m: None)
        self.entries: dict[str, Entry] = {}  # insertion order = LRU order
        self._loading: dict[str, asyncio.Future[Entry]] = {}
        self.inflight = InFlight()  # how each load in flight is stopped, and orphans
        self._downloads = DownloadThreads()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.loads = 0  # completed loads (tests and status read it)

    def configure(
        self,
        memory_limit_gb: float,
        idle_unload_s: float,
        prompt_cache_mb: int,
        *,
        speculative: str = "auto",
        draft_tokens: int = 8,
    ) -> None:
        self.memory_limit_gb = memory_limit_gb
        self.idle_unload_s = idle_unload_s
        self.prompt_cache_mb = prompt_cache_mb
        self.speculative = speculative
        self.draft_tokens = draft_tokens
        for entry in self.entries.values():  # loaded engines follow a config reload
            entry.engine.speculative = speculative
            entry.engine.draft_tokens = draft_tokens

    @property
    def budget_bytes(self) -> int:
        if self.memory_limit_gb > 0:
            return int(self.memory_limit_gb * (1 << 30))
        return _total_memory() // 2  # a safe share: half of RAM (unified memory on a Mac)

    def loaded(self, spec: str) -> bool:
        return spec in self.entries

    def memory(self) -> dict[str, int]:
        """MLX's allocator counters: `active` (arrays alive: weights, KV caches), `cache` (freed
        buffers MLX keeps for reuse) and `peak`. Empty before any model was loaded (no MLX)."""
        if not self.loads:
            return {}
        import mlx.core as mx

        return {
            "active": mx.get_active_memory(),
            "cache": mx.get_cache_memory(),
            "peak": mx.get_peak_memory(),
        }

    # --- acquire ----------------------------------------------------------------------------
    async def acquire(
        self, spec: str, dequantize: str, hub: WindowEnv | None = None, draft_of: str = ""
    ) -> Entry:
        """The loaded model for `spec`, loading it once for all concurrent callers (`hub`: the
        window whose environment a download runs with: the first caller's; a load that the
        windows of its environment have all left is started again as this caller's own,
        inflight.py). `draft_of`: the model `spec` drafts for, which its load never evicts
        (ModelError when both do not fit) and which its error messages name."""
        while True:
            try:
                return await self._acquire(spec, dequantize, hub, draft_of)
            except LoadOrphaned as exc:
                if exc.identity == _identity(hub):  # a closed window's (its preload)
                    raise

    async def _acquire(
        self, spec: str, dequantize: str, hub: WindowEnv | None, draft_of: str = ""
    ) -> Entry:
        entry = self.entries.get(spec)
        if entry is not None and entry.dequantize != dequantize and not entry.busy:
            await self.unload(spec, reason=f"to reload with dequantize = {dequantize}")
            entry = None
        if entry is not None:
            self.entries[spec] = self.entries.pop(spec)  # most recently used
            entry.last_used = time.monotonic()
            return entry
        fut = self._loading.get(spec)
        if fut is not None and self.inflight.foreign_orphan(spec, _identity(hub)):
            self.inflight.stop([spec], LoadOrphaned)  # never on a closed window's environment
        elif fut is None:
            load = self._load(spec, dequantize, hub, draft_of)
            fut = self._loading[spec] = asyncio.ensure_future(load)
            fut.add_done_callback(lambda _: self._loading.pop(spec, None))
        return await asyncio.shield(fut)

    def cancel_loading(self, but: Collection[str] = ()) -> list[str]:
        """Stop the loads in flight but those of the specs in `but` (the client cancelled the
        load progress): reading weights at its next step, downloads at their next piece, or at
        once when every load stops (huggingface_hub's connections, which all downloads share,
        are closed). Returns the specs stopped; each gives its waiters LoadCancelled, and the
        next request loads it again."""
        chosen = [spec for spec in self.inflight.loads if spec not in but]
        self.inflight.stop(chosen)
        if len(chosen) == len(self.inflight.loads):
            self._downloads.interrupt()
        return chosen

    def orphan(
        self,
        is_orphan: Callable[[str, Hashable], bool],
        grace_s: float,
        closed: Collection[tuple[str, Hashable]] = (),
    ) -> None:
        """Stop, after `grace_s`, the loads that `is_orphan(spec, download identity)` says no
        open window waits for; `closed`: the closing window's (InFlight.orphan)."""
        self.inflight.orphan(is_orphan, grace_s, closed)

    async def _load(
        self, spec: str, dequantize: str, hub: WindowEnv | None, draft_of: str = ""
    ) -> Entry:
        # The loader's first import (mlx-lm, transformers: seconds) stays off the event loop.
        await asyncio.to_thread(importlib.import_module, f"{__package__}.loader")
        loop = asyncio.get_running_loop()
        stop = self.inflight.begin(spec, _identity(hub))
        self.on_event(spec, "loading", f"loading {spec}")
        try:
            source, share = spec, 0.0
            if is_hf_repo(spec):
                source, share = await self._download(spec, stop, hub), DOWNLOAD_SHARE
            lm, seconds = await self.inflight.until_stopped(
                spec,
                loop.run_in_executor(
                    self.executor, self._load_sync, spec, source, dequantize, share, stop
                ),
            )
            # Logged here, not on the MLX thread: this task runs in the context of the session
            # that asked for the load, so in a shared daemon the record reaches its window.
            log.info("loaded %s in %.2fs (%.0f MB)", spec, seconds, lm.nbytes / 1e6)
            await self._make_room(spec, lm.nbytes, keep=draft_of)
        except ModelError as exc:
            said = f"{draft_role(spec, draft_of)}: {exc.message}" if draft_of else exc.message
            self.on_event(spec, "cancelled" if isinstance(exc, LoadCancelled) else "error", said)
            raise
        finally:
            self.inflight.end(spec)
        engine = BatchEngine(
            lm,
            self.executor,
            self.prompt_cache_mb << 20,
            speculative=self.speculative,
            draft_tokens=self.draft_tokens,
        )
        entry = Entry(spec, engine, lm.nbytes, time.monotonic(), dequantize)
        self.entries[spec] = entry
        self.loads += 1
        self.on_event(spec, "ready", f"{spec} ready ({lm.nbytes / 1e6:.0f} MB)")
        self._schedule_idle_check()
        return entry

    async def _download(self, spec: str, stop: threading.Event, hub: WindowEnv | None) -> str:
        """The HF snapshot directory for `spec`, fetched off the MLX thread (other models keep
        generating meanwhile); byte progress is the first DOWNLOAD_SHARE of the load's."""
        self.on_progress(spec, 0.0, f"resolving {spec} on Hugging Face")

        def on_bytes(done: int, total: int) -> None:
            fraction = DOWNLOAD_SHARE * done / total if total else 0.0
            self.on_progress(spec, max(fraction, 0.001), progress_message(spec, done, total))

        work = self._downloads.start(lambda: fetch(spec, on_bytes=on_bytes, stop=stop, hub=hub))
        return str(await self.inflight.until_stopped(spec, work))

    def _load_sync(
        self, spec: str, source: str, dequantize: str, share: float, stop: threading.Event
    ) -> Any:
        """Load on the MLX thread: (the model, seconds it took); progress fractions map into
        [share, 1]."""
        from . import load_model

        def progress(fraction: float, message: str) -> None:
            if stop.is_set():
                raise LoadCancelled(cancelled_message(spec))
            if share == 0.0 or fraction > 0.0:  # the download already began the progress
                self.on_progress(spec, share + (1 - share) * fraction, message)

        t0 = time.perf_counter()
        try:
            how = {"dequantize": dequantize, "progress": progress, "fast_prefill": True}
            lm = load_model(source, **how)  # type: ignore[arg-type]
        except ModelError:
            raise
        except Exception as exc:  # anything unexpected still reaches every waiter clearly
            raise ModelError(f"cannot load model {spec}: {type(exc).__name__}: {exc}") from exc
        lm.name = spec
        return lm, time.perf_counter() - t0

    async def _make_room(self, spec: str, nbytes: int, keep: str = "") -> None:
        """Evict idle models but `keep`, least recently used first, until `nbytes` more fit
        the budget."""
        budget = self.budget_bytes
        if nbytes > budget:
            raise ModelError(
                f"model {spec} needs {nbytes / 2**30:.2f} GiB, over the memory budget of "
                f"{budget / 2**30:.2f} GiB (local.memory_limit_gb)"
            )
        for other in list(self.entries.values()):
            if sum(e.nbytes for e in self.entries.values()) + nbytes <= budget:
                return
            if not other.busy and other.spec != keep:
                await self.unload(other.spec, reason="to make room under the memory budget")
        used = sum(e.nbytes for e in self.entries.values())
        if used + nbytes > budget:
            held = ", ".join(e.spec for e in self.entries.values() if e.busy or e.spec == keep)
            raise ModelError(
                f"model {spec} ({nbytes / 2**30:.2f} GiB) does not fit the memory budget of "
                f"{budget / 2**30:.2f} GiB beside {held} (generating, or the model it drafts for)"
            )

    # --- unload -----------------------------------------------------------------------------
    async def unload(self, spec: str, reason: str = "") -> None:
        entry = self.entries.pop(spec, None)
        if entry is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, _free, entry)
        log.info("unloaded %s %s", spec, reason)
        self.on_event(spec, "unloaded", f"unloaded {spec} {reason}".strip())

    def _schedule_idle_check(self) -> None:
        if self.idle_unload_s <= 0 or self._idle_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(min(self.idle_unload_s, 5.0), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        now = time.monotonic()
        for entry in list(self.entries.values()):
            if entry.busy:
                entry.last_used = now
            elif now - entry.last_used >= self.idle_unload_s:
                asyncio.ensure_future(self.unload(entry.spec, reason="after being idle"))
        if self.entries:
            self._schedule_idle_check()

    def touch(self, entry: Entry) -> None:
        entry.last_used = time.monotonic()
        self._schedule_idle_check()

    def forget(self, spec: str) -> None:
        """A spec no longer configured: drop it when it is idle (no unload mid-request)."""
        entry = self.entries.get(spec)
        if entry is not None and not entry.busy:
            asyncio.ensure_future(self.unload(spec, reason="(no longer configured)"))

    def close(self, timeout: float | None = None) -> bool:
        """Stop the loads in flight, give downloads a moment to delete their partial files,
        and wait up to `timeout` seconds (None: for ever) until the MLX thread has finished
        this pool's work (cancelled requests leave the batch at their next step; a model load
        or a long prefill does not stop). Returns False when the work was still running."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.cancel_loading()
        self._downloads.join(DOWNLOAD_EXIT_WAIT_S)
        try:
            self.executor.submit(lambda: None).result(timeout)
        except TimeoutError:
            return False
        return True


def _identity(hub: WindowEnv | None) -> Hashable:
    """What a load's download runs with (None: this process's environment)."""
    return None if hub is None else hub.identity


def _free(entry: Entry) -> None:
    import gc

    import mlx.core as mx

    entry.engine.close()
    entry.engine.cache = None  # type: ignore[assignment]
    entry.engine.lm = None
    gc.collect()
    mx.clear_cache()


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
