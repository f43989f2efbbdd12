"""Picks the backend chain for a request and makes fallback invisible to the client.

The router works on the backend interface and its typed errors only (no HTTP, no MLX). For
each request it walks the chain in order, skipping backends that privacy rules or an open
circuit breaker rule out, retrying rate limits on the same backend before the first token,
falling back to the next backend on failure or first-token timeout, and -- if a backend dies
mid-answer -- continuing on the next one with the partial answer as an assistant prefix, so the
client sees one stream and one result. All attempts share one time budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlparse

from .backends.base import (
    Backend,
    BackendError,
    BadRequest,
    Delta,
    Done,
    NotConfigured,
    RateLimited,
    Request,
    ServerError,
    Timeout,
)
from .config import Config

log = logging.getLogger(__name__)

DeltaFn = Callable[[str, str], None]  # (text, backend name)


@dataclass(slots=True)
class Attempt:
    backend: str
    error: str


@dataclass(slots=True)
class Outcome:
    text: str
    backend: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    attempts: list[Attempt]
    first_token_ms: float | None
    total_ms: float


class AllFailed(Exception):
    """Every backend in the chain was skipped or failed; `attempts` says why, in order."""

    def __init__(self, attempts: list[Attempt]) -> None:
        summary = "; ".join(f"{a.backend}: {a.error}" for a in attempts) or "no backend"
        super().__init__(f"all backends failed ({summary})")
        self.attempts = attempts


class UnknownBackend(ValueError):
    pass


@dataclass(slots=True)
class Breaker:
    """Circuit breaker of one backend: closed -> open (cooldown) -> half-open (one probe)."""

    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def state(self, now: float) -> str:
        if self.open_until and now < self.open_until:
            return "cooldown"
        return "ok"


@dataclass(slots=True)
class _Run:
    """Mutable state of one routed request."""

    on_delta: DeltaFn | None
    start: float = field(default_factory=time.monotonic)
    text: str = ""
    first_token: float | None = None


class Router:
    def __init__(
        self,
        config: Config,
        backends: Mapping[str, Backend],
        on_status: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.backends = dict(backends)
        self.on_status = on_status or (lambda: None)
        self.breakers: dict[str, Breaker] = {}
        self.upstream_requests = 0  # attempts actually handed to a backend

    # --- status -----------------------------------------------------------------------------
    def backend_states(self) -> dict[str, str]:
        now = time.monotonic()
        states = {}
        for name, backend in self.backends.items():
            if not backend.is_local and not self.config.routing.cloud:
                states[name] = "unconfigured"
            else:
                states[name] = self.breakers.get(name, Breaker()).state(now)
        return states

    def chain(self, kind: str, model: str | None) -> list[str]:
        routing = self.config.routing
        if model and model in routing.models:
            return list(routing.models[model])
        return list(getattr(routing, kind))

    # --- routing ----------------------------------------------------------------------------
    async def run(
        self,
        request: Request,
        *,
        model: str | None = None,
        backend: str | None = None,
        documents: list[str] | None = None,
        on_delta: DeltaFn | None = None,
    ) -> Outcome:
        if backend is not None and backend not in self.backends:
            raise UnknownBackend(
                f"unknown backend {backend!r} (configured: {sorted(self.backends)})"
            )
        chain = [backend] if backend else self.chain(request.kind, model)
        run = _Run(on_delta)
        attempts: list[Attempt] = []
        budget = self.config.timeouts.total_s
        candidates = [n for n in chain if self._admit(n, documents or [], attempts)]
        for i, name in enumerate(candidates):
            remaining = budget - (time.monotonic() - run.start)
            if remaining <= 0:
                attempts.append(Attempt(name, "skipped: request time budget spent"))
                continue
            is_last = i == len(candidates) - 1
            req = replace(request, assistant_prefix=request.assistant_prefix + run.text)
            try:
                done = await self._attempt(name, req, run, is_last)
            except asyncio.CancelledError:
                self._release_probe(name)
                raise
            except BackendError as exc:
                attempts.append(Attempt(name, _describe(exc, run.text)))
                self._failed(name, exc)
                log.info("backend %s failed: %s", name, exc)
                continue
            self._succeeded(name)
            now = time.monotonic()
            return Outcome(
                text=run.text,
                backend=name,
                model=done.model,
                finish_reason=done.finish_reason,
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                attempts=attempts,
                first_token_ms=(run.first_token - run.start) * 1000 if run.first_token else None,
                total_ms=(now - run.start) * 1000,
            )
        raise AllFailed(attempts)

    def _admit(self, name: str, documents: list[str], attempts: list[Attempt]) -> bool:
        """Privacy rules and the breaker, decided before any byte leaves the machine."""
        b = self.backends.get(name)
        if b is None:
            attempts.append(Attempt(name, "skipped: not configured"))
            return False
        if not b.is_local:
            if not self.config.routing.cloud:
                attempts.append(Attempt(name, "skipped: cloud backends are off (routing.cloud)"))
                return False
            if doc := next((d for d in documents if self.excluded(d)), None):
                attempts.append(Attempt(name, f"skipped: {doc} matches routing.exclude"))
                return False
        breaker = self.breakers.get(name)
        if breaker and breaker.state(time.monotonic()) == "cooldown":
            attempts.append(Attempt(name, "skipped: circuit open after repeated failures"))
            return False
        if breaker and breaker.open_until and breaker.probing:
            attempts.append(Attempt(name, "skipped: circuit half-open, probe in flight"))
            return False
        if breaker and breaker.open_until:
            breaker.probing = True  # half-open: this request is the probe
        return True

    def excluded(self, uri: str) -> bool:
        path = _uri_path(uri)
        return any(fnmatch.fnmatchcase(path, g) for g in self.config.routing.exclude)

    async def _attempt(self, name: str, req: Request, run: _Run, is_last: bool) -> Done:
        """One backend, with retries on 429/503 before its first token."""
        retries = 0
        while True:
            streamed_before = len(run.text)
            try:
                return await self._stream_one(name, req, run, is_last)
            except (RateLimited, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.status != 503:
                    raise
                if len(run.text) > streamed_before or retries >= self.config.routing.max_retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else _backoff(retries)
                remaining = self.config.timeouts.total_s - (time.monotonic() - run.start)
                if delay >= remaining:
                    raise
                retries += 1
                log.info("%s: %s, retry %d in %.2fs", name, exc.code, retries, delay)
                await asyncio.sleep(delay)

    async def _stream_one(self, name: str, req: Request, run: _Run, is_last: bool) -> Done:
        t = self.config.timeouts
        first_limit = t.inline_first_token_s if req.kind == "inline" else t.first_token_s
        self.upstream_requests += 1
        stream = self.backends[name].stream(req)
        got_token = False
        # A soft cap (inline's max_ms): when it passes, what has streamed is the answer.
        soft_end = time.monotonic() + req.max_time_s if req.max_time_s else None
        try:
            while True:
                now = time.monotonic()
                remaining = t.total_s - (now - run.start)
                # No fallback left: only the overall budget limits the wait for a first token.
                limit = remaining if got_token or is_last else min(first_limit, remaining)
                if got_token and soft_end is not None:
                    if now >= soft_end:
                        return Done("length", 0, 0, name)
                    limit = min(limit, soft_end - now)
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                    # that races with a token, and it costs a task per token.
                    async with asyncio.timeout(max(limit, 0.001)):
                        event = await anext(stream)
                except StopAsyncIteration:
                    raise BackendError("stream ended without a result") from None
                except TimeoutError:
                    if got_token and soft_end is not None and time.monotonic() >= soft_end:
                        return Done("length", 0, 0, name)
                    phase = "total" if limit >= remaining else "first_token"
                    raise Timeout(f"no token within {limit:.1f}s", phase) from None
                if isinstance(event, Delta):
                    if not event.text:
                        continue
                    got_token = True
                    if run.first_token is None:
                        run.first_token = time.monotonic()
                    run.text += event.text
                    if run.on_delta:
                        run.on_delta(event.text, name)
                elif isinstance(event, Done):
                    return event
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # closes the HTTP stream / stops local generation

    # --- circuit breaker --------------------------------------------------------------------
    def _failed(self, name: str, exc: BackendError) -> None:
        if isinstance(exc, BadRequest | NotConfigured):  # not the backend's health
            self._release_probe(name)
            return
        b = self.breakers.setdefault(name, Breaker())
        was = b.state(time.monotonic())
        b.failures += 1
        b.probing = False
        if b.failures >= self.config.routing.breaker_failures or b.open_until:
            b.open_until = time.monotonic() + self.config.routing.breaker_cooldown_s
        if b.state(time.monotonic()) != was:
            log.warning("circuit open for %s after %d failures", name, b.failures)
            self.on_status()

    def _succeeded(self, name: str) -> None:
        b = self.breakers.get(name)
        if b is None:
            return
        reopened = bool(b.open_until)
        self.breakers[name] = Breaker()
        if reopened:
            log.info("circuit closed for %s", name)
            self.on_status()

    def _release_probe(self, name: str) -> None:
        if b := self.breakers.get(name):
            b.probing = False

    def cooldown_ends(self) -> list[float]:
        """Monotonic times at which an open circuit turns half-open (status changes then)."""
        now = time.monotonic()
        return [b.open_until for b in self.breakers.values() if b.open_until > now]


def _describe(exc: BackendError, text_so_far: str) -> str:
    where = f" after {len(text_so_far)} chars streamed" if text_so_far else ""
    return f"{exc}{where}"


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s ... scaled by U(0.5, 1)."""
    return 0.25 * (2**attempt) * random.uniform(0.5, 1.0)


def _uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri
