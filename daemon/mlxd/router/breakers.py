"""Circuit breakers, one per backend: closed -> open (cooldown) -> half-open (one probe).

N consecutive failures that say something about a backend's health (errors.BackendError
.counts_against_breaker) open its circuit for a cooldown; then one request is let through as
the probe: its success closes the circuit, its failure opens it again at once. The probe is
held by the attempt that claimed it: only that attempt's end frees it (another attempt at the
backend, forced there or started before its circuit opened, neither holds nor frees it).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackendError, Timeout
from .waits import share_of_bound

log = logging.getLogger(__name__)

Plan = tuple[str, str | None]  # (backend name, why it is skipped; None: try it)


@dataclass(slots=True)
class Breaker:
    """Circuit breaker of one backend."""

    failures: int = 0
    open_until: float = 0.0
    probe: int = 0  # the attempt that holds the probe (claim_probe's ticket); 0: none

    def state(self, now: float) -> str:
        if self.open_until and now < self.open_until:
            return "cooldown"
        return "ok"


class Breakers(dict[str, Breaker]):
    """The breakers of every backend that has failed, by name; `on_status` is called when a
    circuit opens or closes (the status the editor shows changes)."""

    def __init__(self, on_status: Callable[[], None]) -> None:
        super().__init__()
        self.on_status = on_status
        # Cloud backends that, tried first, let an inline request's bound pass without a usable
        # answer (hung, thinking, stalled mid-line, or slower than inline.max_ms), each until
        # when: while marked, one with backends after it gets only a share of the bound
        # (waits.first_token_by), so the next one still answers in time. Only the end of the
        # mark (the circuits' cooldown) or a reset gives it the whole bound again, not an
        # answer in time (a provider that hung every other request blanked each of those), and
        # a cut at the share never renews it (attacks, session 25-26). Not a circuit: chat and
        # complete, with limits of their own, keep the backend.
        self.late: dict[str, float] = {}
        # Bumped by each reset of a backend's mark (all: `_all`): an attempt that started
        # before it (at the old endpoint or key) marks nothing when its bound passes.
        self._epochs: dict[str, int] = {}
        self._all = 0
        self._tickets = itertools.count(1)  # claim_probe's: which attempt holds a probe

    def epoch(self, name: str) -> tuple[int, int]:
        """Which resets of `name`'s mark have happened: mark_late takes it from an attempt's
        start."""
        return self._all, self._epochs.get(name, 0)

    def late_for_inline(self, name: str) -> bool:
        return self.late.get(name, 0.0) > time.monotonic()

    def mark_late(self, name: str, cooldown_s: float, epoch: tuple[int, int]) -> None:
        """An inline request's bound passed with no usable answer from `name`, tried at `epoch`
        with the whole bound: marked for `cooldown_s` (nothing when a reset came since)."""
        if epoch == self.epoch(name) and not self.late_for_inline(name):
            self.late[name] = time.monotonic() + cooldown_s
            log.warning(
                "%s is late for inline requests (no usable answer within inline.max_ms): for "
                "%gs it gets a share of the bound, the backends after it the rest",
                name, cooldown_s,
            )  # fmt: skip

    def share(self, name: str, after: int) -> float | None:
        """The share of the inline bound `name` gets with `after` backends to try after it
        (waits.share_of_bound): None (all of it) unless it is late and one follows."""
        return share_of_bound(after) if after and self.late_for_inline(name) else None

    def late_left(self) -> dict[str, float]:
        """Seconds each backend stays late for inline requests (only those still marked)."""
        now = time.monotonic()
        return {name: round(until - now, 1) for name, until in self.late.items() if until > now}

    def shorten_late(self, cooldown_s: float) -> None:
        """A reload with a shorter cooldown ends the marks it would have ended."""
        most = time.monotonic() + cooldown_s
        self.late = {name: min(until, most) for name, until in self.late.items()}

    def state(self, name: str, now: float) -> str:
        return self.get(name, Breaker()).state(now)

    def reason(self, name: str, now: float) -> str | None:
        """Why the breaker skips `name` now (None: it may be tried)."""
        b = self.get(name)
        if b is None:
            return None
        if b.state(now) == "cooldown":
            return "skipped: circuit open after repeated failures"
        if b.open_until and b.probe:
            return "skipped: circuit half-open, probe in flight"
        return None

    def failed(
        self,
        name: str,
        exc: BackendError,
        limit: int,
        cooldown_s: float,
        alive: bool = False,
        probe: int = 0,
    ) -> None:
        """A failed attempt: the `limit`-th in a row (or a failed probe) opens the circuit.
        `alive`: a background request (Request.priority) that streamed tokens: held back by
        interactive work by design, its running past timeouts.total_s says nothing of the
        backend's health; one that streamed nothing in all that time (a hung model) does.
        `probe`: the attempt's claim_probe ticket; its end frees the probe it holds."""
        spared = alive and isinstance(exc, Timeout) and exc.phase == "total"
        if not exc.counts_against_breaker or spared:
            self.release_probe(name, probe)
            return
        b = self.setdefault(name, Breaker())
        was = b.state(time.monotonic())
        b.failures += 1
        if probe and b.probe == probe:
            b.probe = 0
        if b.failures >= limit or b.open_until:
            b.open_until = time.monotonic() + cooldown_s
        if b.state(time.monotonic()) != was:
            log.warning("circuit open for %s after %d failures", name, b.failures)
            self.on_status()

    def succeeded(self, name: str) -> None:
        b = self.get(name)
        if b is None:
            return
        reopened = bool(b.open_until)
        self[name] = Breaker()
        if reopened:
            log.info("circuit closed for %s", name)
            self.on_status()

    def reset(self, name: str | None = None, late: bool = True) -> None:
        """Forget the failures of one backend (or all), and (`late`) that it was late: a new
        endpoint or key gets the whole bound at once."""
        names = [name] if name is not None else list(self)
        if late and name is None:
            self._all += 1
            self.late.clear()
        elif late and name is not None:
            self._epochs[name] = self._epochs.get(name, 0) + 1
            self.late.pop(name, None)
        dropped = [self.pop(n, Breaker()) for n in names]
        if any(b.open_until for b in dropped):
            self.on_status()

    def gate(self, plan: list[Plan], forced: bool) -> tuple[list[Plan], bool]:
        """`plan` with each backend an open circuit skips now (its reason), and whether that
        applies: not for a forced backend, nor when it would leave nothing to try (a request
        that would fail unheard is better spent as a probe). Where it applies, the router asks
        `reason` again when it comes to the backend (its circuit may have opened, or another
        request become its probe, since), and skips it then unless no backend after it is
        left."""
        if forced:
            return plan, False
        now = time.monotonic()
        gated = [(n, r or self.reason(n, now)) for n, r in plan]
        if any(r is None for _, r in gated):
            return gated, True
        return plan, False

    def claim_probe(self, name: str) -> int:
        """A backend past its cooldown (half-open) lets one request through as the probe: a
        ticket when this attempt is it, 0 when not (no circuit to probe, or another attempt
        holds the probe; a forced backend is tried anyway). The attempt's end hands the
        ticket back (`failed`, `release_probe`; `succeeded` closes the circuit): only the
        holder's does, even after a reset and a new probe meanwhile."""
        b = self.get(name)
        if b is None or not b.open_until or b.probe or b.state(time.monotonic()) == "cooldown":
            return 0  # in cooldown: a forced request, or nothing else left to try
        b.probe = next(self._tickets)
        return b.probe

    def release_probe(self, name: str, probe: int) -> None:
        """An attempt ended without a say on the backend's health (cancelled, a bound that
        never counts): the probe it holds (its ticket `probe`) is free for the next request."""
        if probe and (b := self.get(name)) and b.probe == probe:
            b.probe = 0

    def cooldown_ends(self) -> list[float]:
        """Monotonic times at which an open circuit turns half-open (status changes then)."""
        now = time.monotonic()
        return [b.open_until for b in self.values() if b.open_until > now]
