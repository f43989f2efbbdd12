"""Picks the backend chain for a request and makes fallback invisible to the client.

The router works on the backend interface and its typed errors only (no HTTP, no MLX). For
each request it walks the chain in order:

- Privacy first: with `routing.cloud = false`, or a request tied to a document that matches
  `routing.exclude`, cloud backends are skipped before any byte leaves the machine.
- An open circuit breaker (N consecutive failures) skips its backend for a cooldown; then one
  request is let through as the probe (half-open). A forced backend, or a chain with nothing
  else left to try, goes through anyway: failing unheard helps nobody.
- Before its first token a backend is retried on 429 (Retry-After, else exponential backoff
  with jitter) and on a 5xx that carries Retry-After, if the wait fits its first-token limit
  (the request's budget for the last backend left). Any other failure, or no token within
  `first_token_s` (`inline_first_token_s` for inline), moves on to the next backend. Nothing
  is ever retried once tokens were streamed.
- If a backend dies mid-answer, the next one continues it with the partial answer as an
  assistant prefix, so the client sees one stream and one result; `attempts` records the cut.

All attempts, retries and waits share one time budget (`timeouts.total_s`).
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

from . import uris
from .config import Config
from .errors import (
    AllFailed,
    BackendError,
    NotConfigured,
    Timeout,
    UnknownBackend,
    as_failure,
)
from .models import AnswerFilter, Piece, finished_lines
from .types import Attempt, Backend, Delta, DeltaFn, Done, Outcome, Request

log = logging.getLogger(__name__)

Plan = tuple[str, str | None]  # (backend name, why it is skipped; None: try it)


class _Skipped(NotConfigured):
    """An attempt the privacy rules rule out right before it connects: reported exactly like a
    skip decided in the plan ("skipped: ...")."""

    def __str__(self) -> str:
        return self.message


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
    answer: AnswerFilter
    on_reasoning: DeltaFn | None = None
    documents: list[str] = field(default_factory=list)  # what the privacy rules look at
    start: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    deltas: int = 0
    first_token: float | None = None
    # Deltas streamed by attempts that then failed: about one token each (a provider's SSE
    # chunk, a local decode step), the part of max_tokens and of the usage they took.
    cut_tokens: int = 0
    cut_by: str = ""  # the last of them


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

    def update(self, config: Config, backends: Mapping[str, Backend]) -> None:
        """A reloaded config and its backends; a backend that changed starts with a closed
        circuit."""
        old = self.backends
        self.config = config
        self.backends = dict(backends)
        for name, b in self.backends.items():
            if old.get(name) is not b:
                self.reset(name)

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
        on_reasoning: DeltaFn | None = None,
    ) -> Outcome:
        if backend is not None and backend not in self.backends:
            raise UnknownBackend(
                f"unknown backend {backend!r} (configured: {sorted(self.backends)})"
            )
        chain = [backend] if backend else self.chain(request.kind, model)
        if request.max_tokens is None:  # one default for every backend: a fallback keeps it
            request = replace(request, max_tokens=self.config.routing.max_tokens)
        answer = AnswerFilter(request.kind, request.stop, request.language)
        run = _Run(on_delta, answer, on_reasoning, list(documents or []))
        attempts: list[Attempt] = []
        plan = self._plan(chain, run.documents, forced=backend is not None)
        for i, (name, skip) in enumerate(plan):
            if skip:
                attempts.append(Attempt(name, skip))
                continue
            if self._remaining(run) <= 0:
                attempts.append(Attempt(name, "skipped: request time budget spent"))
                continue
            is_last = not any(later_skip is None for _, later_skip in plan[i + 1 :])
            # A continuation asks for what is left of max_tokens, not for all of it again.
            left = request.max_tokens - run.cut_tokens
            if left <= 0:  # the cut answer is already that long
                return self._outcome(run, Done("length", 0, 0, ""), run.cut_by, attempts)
            req = replace(
                request, assistant_prefix=request.assistant_prefix + run.text, max_tokens=left
            )
            self._claim_probe(name)
            run.answer.new_attempt()
            streamed_before, deltas_before = len(run.text), run.deltas
            try:
                done = await self._attempt(name, req, run, is_last)
            except Exception as raised:  # every backend failure is an attempt; see as_failure
                exc = as_failure(raised)
                if exc is not raised:
                    log.warning("backend %s raised", name, exc_info=raised)
                if run.deltas > deltas_before:
                    run.cut_tokens += run.deltas - deltas_before
                    run.cut_by = name
                attempts.append(Attempt(name, _describe(exc, len(run.text) - streamed_before)))
                self._failed(name, exc)
                log.info("backend %s failed: %s", name, exc)
                continue
            except BaseException:  # cancelled: not the backend's health
                self._release_probe(name)
                raise
            self._succeeded(name)
            return self._outcome(run, done, name, attempts)
        raise AllFailed(attempts)

    def _outcome(self, run: _Run, done: Done, name: str, attempts: list[Attempt]) -> Outcome:
        _emit(run, run.answer.flush(), name)
        return Outcome(
            text=run.text,
            backend=name,
            model=done.model,
            finish_reason=done.finish_reason,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=run.cut_tokens + done.completion_tokens,
            attempts=attempts,
            first_token_ms=(run.first_token - run.start) * 1000 if run.first_token else None,
            total_ms=(time.monotonic() - run.start) * 1000,
            reasoning=run.reasoning,
        )

    def _plan(self, chain: list[str], documents: list[str], forced: bool) -> list[Plan]:
        """Each backend of the chain with the reason it is skipped (None: try it), decided
        before any byte leaves the machine. Privacy rules always hold. An open circuit is
        ignored for a forced backend, and when it would leave nothing to try: a request that
        would fail unheard is better spent as a probe."""
        plan = [(name, self._privacy(name, documents)) for name in chain]
        if forced:
            return plan
        now = time.monotonic()
        gated = [(n, r or self._breaker_reason(n, now)) for n, r in plan]
        if any(r is None for _, r in gated):
            return gated
        return plan

    def _privacy(self, name: str, documents: list[str]) -> str | None:
        b = self.backends.get(name)
        if b is None:
            return "skipped: not configured"
        if b.is_local:
            return None
        if not self.config.routing.cloud:
            return "skipped: cloud backends are off (routing.cloud)"
        if doc := next((d for d in documents if self.excluded(d)), None):
            return f"skipped: {doc} matches routing.exclude"
        return None

    def _breaker_reason(self, name: str, now: float) -> str | None:
        b = self.breakers.get(name)
        if b is None:
            return None
        if b.state(now) == "cooldown":
            return "skipped: circuit open after repeated failures"
        if b.open_until and b.probing:
            return "skipped: circuit half-open, probe in flight"
        return None

    def excluded(self, uri: str) -> bool:
        """Whether a document matches routing.exclude. A glob with no `/` (`*.pem`) also
        matches the file name alone, as in .gitignore. The file itself is matched, not the
        address text: every spelling of uris.match_paths, case-insensitively."""
        globs = [g.replace("\\", "/").lower() for g in self.config.routing.exclude]
        for path in uris.match_paths(uri):
            name = path.rsplit("/", 1)[-1]
            if any(
                fnmatch.fnmatchcase(path, g) or ("/" not in g and fnmatch.fnmatchcase(name, g))
                for g in globs
            ):
                return True
        return False

    def _end(self, run: _Run) -> float:
        """When the request's one time budget, shared by every attempt, runs out."""
        return run.start + self.config.timeouts.total_s

    def _remaining(self, run: _Run) -> float:
        return self._end(run) - time.monotonic()

    async def _attempt(self, name: str, req: Request, run: _Run, is_last: bool) -> Done:
        """One backend, with retries on 429 (and 5xx with Retry-After) before its first token. The backend gets one
        first-token limit for all its tries (the whole remaining budget when no fallback is
        left); a Retry-After it cannot afford falls back at once."""
        retries = 0
        first_by = self._end(run) if is_last else time.monotonic() + self._first_token_limit(req)
        while True:
            streamed_before = len(run.text)
            try:
                return await self._stream_one(name, req, run, first_by)
            except BackendError as exc:
                if not exc.retryable:
                    raise  # e.g. a plain 500/502: the next backend is the better bet
                if len(run.text) > streamed_before or retries >= self.config.routing.max_retries:
                    raise  # never retry once tokens were streamed: the client has them
                delay = exc.retry_after if exc.retry_after is not None else _backoff(retries)
                if time.monotonic() + delay >= min(first_by, self._end(run)):
                    raise
                retries += 1
                log.info("%s: %s, retry %d in %.2fs", name, exc.code, retries, delay)
                await asyncio.sleep(delay)

    def _first_token_limit(self, req: Request) -> float:
        t = self.config.timeouts
        return t.inline_first_token_s if req.kind == "inline" else t.first_token_s

    async def _stream_one(self, name: str, req: Request, run: _Run, first_by: float) -> Done:
        """Stream one call to one backend until `first_by` for its first token and the end of
        the request's budget for the rest. The privacy rules are checked again right before
        it connects: the cloud switch, the excludes or the backend itself may have changed
        since the plan (a reload mid-request); then this attempt is skipped, not failed."""
        backend = self.backends.get(name)
        if backend is None:  # a config reload removed it while this request was under way
            raise _Skipped("skipped: not configured (removed by a configuration reload)")
        if skip := self._privacy(name, run.documents):
            raise _Skipped(skip)
        self.upstream_requests += 1
        stream = backend.stream(req)
        start = time.monotonic()
        end_by = self._end(run)
        # A soft cap (inline's max_ms): when it passes, what has streamed is the answer.
        soft_end = start + req.max_time_s if req.max_time_s else None
        got_token = False
        deltas = 0  # this attempt's, for the usage of an answer the daemon ended itself
        try:
            while True:
                now = time.monotonic()
                deadline = end_by if got_token else min(first_by, end_by)
                if got_token and soft_end is not None:
                    if now >= soft_end:
                        return Done("length", 0, 0, name)
                    deadline = min(deadline, soft_end)
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                    # that races with a token, and it costs a task per token.
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        event = await anext(stream)
                except StopAsyncIteration:
                    raise BackendError("stream ended without a result") from None
                except TimeoutError:
                    if got_token and soft_end is not None and time.monotonic() >= soft_end:
                        return Done("length", 0, 0, name)
                    if deadline >= end_by:
                        raise Timeout(
                            f"request time budget ({self.config.timeouts.total_s:g}s) spent",
                            "total",
                        ) from None
                    raise Timeout(
                        f"no token within {first_by - start:.1f}s", "first_token"
                    ) from None
                if isinstance(event, Delta):
                    if not event.text:
                        continue
                    got_token = True
                    run.deltas += 1
                    deltas += 1
                    if run.first_token is None:
                        run.first_token = time.monotonic()
                    piece = run.answer.feed(event.text, event.reasoning)
                    _emit(run, piece, name)
                    if run.answer.stopped:  # a stop sequence or a closing fence: close it
                        return Done("stop", 0, deltas, name)
                    # Only a newline can finish a line: count them only when one arrives.
                    if req.max_lines and "\n" in piece.text:
                        if finished_lines(run.text) >= req.max_lines:
                            return Done("stop", 0, 0, name)  # enough lines: the rest is unwanted
                elif isinstance(event, Done):
                    return event
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # closes the HTTP stream / stops local generation

    # --- circuit breaker --------------------------------------------------------------------
    def _failed(self, name: str, exc: BackendError) -> None:
        if not exc.counts_against_breaker:  # not the backend's health
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

    def reset(self, name: str | None = None) -> None:
        """Forget the failures of one backend (or all): after a new key or config, a backend
        gets a fresh chance instead of sitting out its cooldown."""
        names = [name] if name is not None else list(self.breakers)
        dropped = [self.breakers.pop(n, Breaker()) for n in names]
        if any(b.open_until for b in dropped):
            self.on_status()

    def _claim_probe(self, name: str) -> None:
        """A backend past its cooldown (half-open) lets this one request through as the probe."""
        b = self.breakers.get(name)
        if b is not None and b.open_until:
            b.probing = True

    def _release_probe(self, name: str) -> None:
        if b := self.breakers.get(name):
            b.probing = False

    def cooldown_ends(self) -> list[float]:
        """Monotonic times at which an open circuit turns half-open (status changes then)."""
        now = time.monotonic()
        return [b.open_until for b in self.breakers.values() if b.open_until > now]


def _emit(run: _Run, piece: Piece, name: str) -> None:
    """Hand the filtered text on: answer text to `on_delta`, reasoning to `on_reasoning`."""
    if piece.reasoning:
        run.reasoning += piece.reasoning
        if run.on_reasoning:
            run.on_reasoning(piece.reasoning, name)
    if piece.text:
        run.text += piece.text
        if run.on_delta:
            run.on_delta(piece.text, name)


def _describe(exc: BackendError, streamed: int) -> str:
    """The attempt's error; a backend that failed mid-answer says how much it had streamed."""
    where = f" after {streamed} chars streamed" if streamed else ""
    return f"{exc}{where}"


def _loop_time(monotonic: float) -> float:
    """A time.monotonic() instant on the event loop's clock (the same clock on CPython, but
    the loop does not promise it)."""
    return asyncio.get_running_loop().time() + (monotonic - time.monotonic())


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s ... scaled by U(0.5, 1)."""
    return 0.25 * (2**attempt) * random.uniform(0.5, 1.0)
