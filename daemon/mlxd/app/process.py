"""What one daemon process shares among its LSP sessions (editor windows).

Per process: the model pool (one load per model, the one MLX thread, continuous batching across
windows, the KV prompt cache inside each engine) and the HTTP connection pools (one per timeout
settings). Per session (core.App): documents, config, keys, router and its circuit breakers,
the cloud backends, status.
In-process serving is a process with one session; the shared daemon holds many.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .. import taint
from ..backends import HTTPPools
from ..models import ModelPool, openblas_threads

if TYPE_CHECKING:
    from .core import App


class Process:
    """The shared state, and the sessions using it. The pool's load events are handed to every
    session, and each shows those of the models it configures (status.StatusBoard): a download
    started by one window shows its progress in each window that uses that model, and no other."""

    def __init__(self) -> None:
        self.sessions: list[App] = []
        # The latest load event of each model: a session that joins later starts from it.
        self.model_states: dict[str, tuple[str, str]] = {}
        self.pool = ModelPool(on_progress=self._on_progress, on_event=self._on_event)
        self.http = HTTPPools()  # the cloud backends' connection pools, keyed by their settings
        # Rule 1's memory (taint.py), for every session; the CLI keeps it in the runtime dir.
        self.taint = taint.remembered()

    def attach(self, app: App) -> None:
        """A new session; it sees the models as they are (one loaded before it is ready)."""
        self.sessions.append(app)
        app.board.model_states.update(self.model_states)

    def detach(self, app: App) -> None:
        """A session ended. Its models stay loaded: a window reopened finds them warm (the
        pool's idle unload, its memory budget and the daemon's idle exit free them). A load
        in flight that no open window of its environment names any more goes on for its
        `shared.download_grace_s`, then stops (models/inflight.py)."""
        if app in self.sessions:
            self.sessions.remove(app)
        wanted = self._wanted
        self.pool.orphan(
            lambda spec, who: (spec, who) not in wanted(),
            app.config.shared.download_grace_s,
            closed=self._wanted([app]),
        )

    def _wanted(self, sessions: list[App] | None = None) -> set[tuple[str, Hashable]]:
        """(spec, download identity) of each local model the open sessions (or `sessions`)
        configure."""
        return {
            (spec, None if b.hub is None else b.hub.identity)
            for a in (self.sessions if sessions is None else sessions)
            for b in a.backends.values()
            if b.is_local
            for spec in b.specs
        }

    def specs_in_use(self, but: App | None = None) -> set[str]:
        """The local model specs the sessions (except `but`) configure."""
        return {s for a in self.sessions if a is not but for s in a.local_specs()}

    def configure(self, local: Any) -> None:
        """A session applied its [local] settings: the pool follows the last one applied (one
        memory budget and one cache size per process)."""
        self.pool.configure(
            local.memory_limit_gb,
            local.idle_unload_s,
            local.prompt_cache_mb,
            speculative=local.speculative,
            draft_tokens=local.draft_tokens,
        )

    def _on_progress(self, spec: str, fraction: float, message: str) -> None:
        for app in list(self.sessions):
            app.board.on_load_progress(spec, fraction, message)

    def _on_event(self, spec: str, event: str, message: str) -> None:
        self.model_states[spec] = (event, message)
        for app in list(self.sessions):
            app.board.on_model_event(spec, event, message)

    def stats(self) -> dict[str, Any]:
        """The pool's counters: per model generations, KV reuse, MLX memory."""
        local = {
            spec: {
                "generations": e.engine.generations,
                "promptTokens": e.engine.prompt_tokens,
                "cachedPromptTokens": e.engine.cached_tokens,
                "active": e.engine.active,
                "promptCacheBytes": e.engine.cache.nbytes,
                "draftTokens": e.engine.spec.drafted,
                "acceptedDraftTokens": e.engine.spec.accepted,
                "pausedStreams": e.engine.paused,
            }
            for spec, e in self.pool.entries.items()
        }
        return {
            "local": local,
            "blasThreads": openblas_threads(),
            "modelLoads": self.pool.loads,
            "mlxMemory": {f"{k}Bytes": v for k, v in self.pool.memory().items()},
        }
