"""The status board: the daemon's state as the editor sees it (`mlxd/status`), kept from the
model pool's events and the router's circuit breakers, and sent when it changes.

A circuit's cooldown ends silently, so the board wakes itself up then to announce it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..types import Status

if TYPE_CHECKING:
    from .core import App


class StatusBoard:
    def __init__(self, app: App) -> None:
        self.app = app
        self.model_states: dict[str, tuple[str, str]] = {}  # spec -> (event, message)
        self._load_errors_shown: dict[str, str] = {}  # spec -> the load error last shown
        self._last: Status | None = None
        self._timer: asyncio.TimerHandle | None = None

    def status(self) -> Status:
        """The daemon's state, each backend's, and a message (the loading model, what failed)."""
        app = self.app
        backends = app.router.backend_states()
        for name in app.keys.without_key(app.config.backends):
            if backends.get(name) == "ok":
                backends[name] = "no_key"  # said before a request fails for want of it
        states = self.own_states()
        for name, b in app.backends.items():
            if b.is_local and states.get(b.spec, ("",))[0] in ("error", "cancelled"):
                backends[name] = "error"
        default_event, message = states.get(app.local.spec, ("starting", ""))
        if default_event == "starting" and not app.config.local.preload:
            # Nothing to load before a request needs it: the daemon serves now (a cloud
            # backend answers; the local model loads on first use), as after an idle unload.
            default_event, message = "unloaded", f"{app.local.spec} loads on first use"
        loading = [s for s, (e, _) in states.items() if e == "loading"]
        if loading:
            state = "loading"
            message = states[loading[0]][1]
        elif default_event in ("error", "cancelled"):
            others_ok = any(s == "ok" for n, s in backends.items() if n != "local")
            state = "degraded" if others_ok else "error"
        elif default_event in ("ready", "unloaded"):
            state = (
                "degraded"
                if any(s in ("cooldown", "error") for s in backends.values())
                else "ready"
            )
        else:
            state = "starting"
        message = "; ".join(m for m in (app.closed_reason, message) if m)
        return Status(state=state, backends=backends, message=message or None)

    def publish(self, force: bool = False) -> None:
        """Send the status when it changed (or when forced)."""
        status = self.status()
        if force or status != self._last:
            self._last = status
            self.app.hooks.status(status)
        self._schedule_cooldown_check()

    def _schedule_cooldown_check(self) -> None:
        """A circuit's cooldown ends silently; wake up then to announce the change."""
        ends = self.app.router.cooldown_ends()
        if not ends or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, min(ends) - time.monotonic()) + 0.05

        def fire() -> None:
            self._timer = None
            self.publish()

        self._timer = loop.call_later(delay, fire)

    def own_states(self) -> dict[str, tuple[str, str]]:
        """The load states of the models this session configures (and so may wait for): in a
        shared daemon another window's models, their paths and errors, are not this one's."""
        specs = self.app.local_specs()
        return {s: v for s, v in self.model_states.items() if s in specs}

    def on_model_event(self, spec: str, event: str, message: str) -> None:
        """Pool events, on the event loop: loading -> ready | error | cancelled, unloaded.
        A load error is also shown to the user, once until it changes (every request retries
        the load, and inline requests come at typing speed). Only a model this session
        configures is shown (its state is kept: a later config may name it)."""
        self.model_states[spec] = (event, message)
        if spec not in self.app.local_specs():
            return
        if event in ("ready", "error", "cancelled"):
            self.app.hooks.load_progress("end", 1.0, message)
        if event == "error" and self._load_errors_shown.get(spec) != message:
            self._load_errors_shown[spec] = message
            self.app.hooks.show_error(f"mlxd: {message}")
        elif event == "ready":
            self._load_errors_shown.pop(spec, None)
        self.publish()

    def on_load_progress(self, spec: str, fraction: float, message: str) -> None:
        # Called on the MLX thread: hop onto the event loop.
        kind = "begin" if fraction <= 0.0 else "report"
        if fraction >= 1.0:
            return  # "end" comes with the ready/error event

        def report() -> None:  # on the loop, where the session's config is current
            if spec in self.app.local_specs():
                self.app.hooks.load_progress(kind, fraction, message)

        self.app.hooks.call_soon(report)
