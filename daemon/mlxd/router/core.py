"""Picks the backend chain for a request and makes fallback invisible to the client.

The router works on the backend interface and its typed errors only (no HTTP, no MLX). For
each request it walks the chain in order:

- Privacy first (privacy.py): skipped before any byte leaves the machine.
- An open circuit (breakers.py) skips its backend; a forced backend, or a chain with nothing
  else left to try, goes through anyway: failing unheard helps nobody.
- Before its first token a backend is retried on 429 (Retry-After, else exponential backoff
  with jitter) and on a 5xx that carries Retry-After, if the wait fits its first-token limit
  (the request's budget for the last backend left). Any other failure, or no token within
  `first_token_s` (`inline_first_token_s` for inline), moves on to the next backend; time a
  local model says it set the request aside for an inline one (`Held`) is not counted. Nothing
  is ever retried once tokens were streamed.
- Text a cloud backend generates is redacted as it streams (stream_redact): a hostile provider
  may echo a key as model output, split across chunks.
- If a backend dies mid-answer, the next one continues it with the partial answer as an
  assistant prefix, so the client sees one stream and one result; `attempts` records the cut.

All attempts, retries and waits share one time budget (`timeouts.total_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from ..config import Config
from ..errors import AllFailed, BackendError, UnknownBackend, UnknownModel, as_failure
from ..models import AnswerFilter, StopPolicy
from ..stream_redact import Secrets, StreamRedactor
from ..types import Attempt, Backend, Delta, DeltaFn, Done, Held, Outcome, Request
from .attempts import Skipped, by_bound, describe, late
from .breakers import Breakers, Plan
from .privacy import excluded, skip_reason
from .run import Run, answered, continued, emit, flush, inline_bound, streamed, take, whole_line
from .waits import YIELD_EVERY, backoff, first_token_by, loop_time, ran_out

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self,
        config: Config,
        backends: Mapping[str, Backend],
        on_status: Callable[[], None] | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.config = config
        self.backends = dict(backends)
        self.secrets = secrets  # redacted from what cloud backends generate
        self.on_status = on_status or (lambda: None)
        self.breakers = Breakers(lambda: self.on_status())
        self.upstream_requests = 0  # attempts actually handed to a backend

    def update(self, config: Config, backends: Mapping[str, Backend]) -> None:
        """A reloaded config and its backends; a backend that changed, and every local one
        (kept across reloads for what it learned, but given a fresh chance as when it was
        rebuilt), starts with a closed circuit."""
        old = self.backends
        self.config = config
        self.backends = dict(backends)
        for name, b in self.backends.items():
            was = old.get(name)
            if was is not b or b.is_local:
                # rebuilt with the same endpoint and key settings: as late as it was
                same = type(was) is type(b) and getattr(was, "cfg", None) == getattr(b, "cfg", 0)
                self.breakers.reset(name, late=b.is_local or not same)
        self.breakers.shorten_late(config.routing.breaker_cooldown_s)

    # --- status -----------------------------------------------------------------------------
    def backend_states(self) -> dict[str, str]:
        now, cloud = time.monotonic(), self.config.routing.cloud
        return {
            name: self.breakers.state(name, now) if b.is_local or cloud else "unconfigured"
            for name, b in self.backends.items()
        }

    def resolve(self, model: str | None, backend: str | None) -> tuple[str | None, str | None]:
        """(alias, backend) for a request's `model`: a routing alias (its chain), or a model a
        backend serves (that backend, no fallback). Raises UnknownModel for anything else."""
        if model is None or model in self.config.routing.models:
            return model, backend
        for name, b in self.backends.items():
            if model in (b.spec, name):
                return None, backend or name
        known = sorted(self.config.routing.models) + [b.spec for b in self.backends.values()]
        raise UnknownModel(f"unknown model {model!r} (known: {known})")

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
        policy = StopPolicy.of(request)
        answer = AnswerFilter(request.kind, policy.strings, request.language)
        run = Run(on_delta, answer, on_reasoning, list(documents or []), policy=policy)
        if self.secrets is not None:
            run.guards = (StreamRedactor(self.secrets), StreamRedactor(self.secrets))
        attempts: list[Attempt] = []
        plan, run.gated = self._plan(chain, run.documents, forced=backend is not None)
        for i, (name, skip) in enumerate(plan):
            if skip:
                attempts.append(Attempt(name, skip))
                continue
            if self._remaining(run) <= 0:
                attempts.append(Attempt(name, "skipped: request time budget spent"))
                continue
            # A continuation asks for what is left of max_tokens, not for all of it again.
            left = request.max_tokens - run.cut_tokens
            if run.cut_tokens and left <= 0:  # the cut answer is already that long
                return self._outcome(run, Done("length", 0, 0, ""), run.cut_by, attempts)
            after = sum(s is None and not self._opened(run, n) for n, s in plan[i + 1 :])
            if after and (why := self._opened(run, name)):  # since the plan: skipped now too
                attempts.append(Attempt(name, why))
                continue
            done = await self._try(name, replace(request, max_tokens=left), run, after, attempts)
            empty = not answered(run, False) and not run.answer.stopped  # no stop ended it
            if done is not None and request.kind == "inline" and after and empty:
                # nothing to show, time left: the next may have it (a thinker's blanked all)
                attempts.append(Attempt(name, "no answer text (reasoning or whitespace only)"))
                run.text = ""  # whitespace: the next starts afresh (inline streams nothing)
            elif done is not None:
                return self._outcome(run, done, name, attempts)
        raise AllFailed(attempts)

    async def _try(
        self, name: str, request: Request, run: Run, after: int, attempts: list[Attempt]
    ) -> Done | None:
        """One backend's attempt (`after`: backends still to try after it), continuing what
        earlier ones streamed: its Done, or None when it failed (the failure recorded in
        `attempts` and its circuit breaker)."""
        local = is_local(self, name)
        # Inline: a cloud backend late for inline requests gets a share of the bound; one
        # tried first, with all of it, that has no usable answer by the bound is marked late
        # (not one a cut at the share, or an earlier backend's time, left short).
        inline = request.kind == "inline"
        share = self.breakers.share(name, after) if inline else None
        marks = inline and not local and share is None and not run.tried
        epoch = self.breakers.epoch(name)
        run.unusable, run.tried = False, run.tried + 1
        req = replace(request, assistant_prefix=continued(request, run, local, self.secrets))
        probe = self.breakers.claim_probe(name)
        run.texts = run.thoughts = 0
        streamed_before, deltas_before = streamed(run), run.deltas
        try:
            done = await self._attempt(name, req, run, not after, share)
        except Exception as raised:  # every backend failure is an attempt; see as_failure
            exc = as_failure(raised)
            if exc is not raised:
                log.warning("backend %s raised", name, exc_info=raised)
            if run.deltas > deltas_before:
                run.cut_tokens += run.deltas - deltas_before
                run.cut_by = name
            said = describe(exc, streamed(run) - streamed_before)
            # Only a local model's bound is a matter of time; a cloud backend silent until
            # the bound may be down (a hung connection): a failure, counted as one.
            attempts.append(Attempt(name, said, timed_out=by_bound(exc) and local))
            r, cooldown = self.config.routing, self.config.routing.breaker_cooldown_s
            if late(exc) and marks:
                self.breakers.mark_late(name, cooldown, epoch)
            alive = request.priority == "background" and run.deltas > deltas_before
            self.breakers.failed(name, exc, r.breaker_failures, cooldown, alive, probe)
            log.info("backend %s failed: %s", name, exc)
            return None
        except BaseException:  # cancelled: not the backend's health
            self.breakers.release_probe(name, probe)
            raise
        if run.unusable and marks:  # cut by the bound mid-line: nothing to show
            self.breakers.mark_late(name, self.config.routing.breaker_cooldown_s, epoch)
        self.breakers.succeeded(name)
        return done

    def _outcome(self, run: Run, done: Done, name: str, attempts: list[Attempt]) -> Outcome:
        emit(run, run.answer.flush(), name)
        flush(run, name)
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

    def _plan(
        self, chain: list[str], documents: list[str], forced: bool
    ) -> tuple[list[Plan], bool]:
        """Each backend of the chain with the reason it is skipped (None: try it), decided
        before any byte leaves the machine, and whether open circuits apply (Breakers.gate).
        Privacy rules always hold."""
        plan = [(name, self._privacy(name, documents)) for name in chain]
        return self.breakers.gate(plan, forced)

    def _opened(self, run: Run, name: str) -> str | None:
        """Why `name`'s circuit skips it now where the plan applies them (Run.gated): it opened,
        or another request became its probe, since the request planned."""
        return self.breakers.reason(name, time.monotonic()) if run.gated else None

    def _privacy(self, name: str, documents: list[str]) -> str | None:
        return skip_reason(self.backends.get(name), self.config.routing, documents)

    def first_choice(self, kind: str, documents: list[str]) -> str | None:
        """The backend a `kind` request about `documents` would try first now (privacy rules
        and open circuits applied), or None when none is left."""
        plan, _ = self._plan(self.chain(kind, None), documents, forced=False)
        return next((name for name, skip in plan if skip is None), None)

    def excluded(self, uri: str) -> bool:
        """Whether a document matches routing.exclude (privacy.excluded)."""
        return excluded(uri, self.config.routing.exclude)

    def _end(self, run: Run) -> float:
        """When the request's one time budget, shared by every attempt, runs out."""
        return run.start + self.config.timeouts.total_s

    def _remaining(self, run: Run) -> float:
        return self._end(run) - time.monotonic()

    async def _attempt(
        self, name: str, req: Request, run: Run, is_last: bool, share: float | None
    ) -> Done:
        """One backend, with retries on 429 (and 5xx with Retry-After) before its first token.
        The backend gets one first-token limit for all its tries (the whole remaining budget
        when no fallback is left; `share`: that share of the inline bound, for a backend late
        for inline requests); a Retry-After it cannot afford falls back at once."""
        retries = 0
        limit_s, bound = self._first_token_limit(req), inline_bound(run, req)
        first_by = first_token_by(limit_s, self._end(run), bound, is_last, share)
        while True:
            streamed_before = streamed(run)
            try:
                return await self._stream_one(name, req, run, first_by, share is not None)
            except BackendError as exc:
                if not exc.retryable:
                    raise  # e.g. a plain 500/502: the next backend is the better bet
                if streamed(run) > streamed_before or retries >= self.config.routing.max_retries:
                    raise  # never retry once tokens were streamed: the client has them
                delay = exc.retry_after if exc.retry_after is not None else backoff(retries)
                if time.monotonic() + delay >= min(first_by, self._end(run)):
                    raise
                retries += 1
                log.info("%s: %s, retry %d in %.2fs", name, exc.code, retries, delay)
                await asyncio.sleep(delay)

    def _first_token_limit(self, req: Request) -> float:
        t = self.config.timeouts
        return t.inline_first_token_s if req.kind == "inline" else t.first_token_s

    async def _stream_one(
        self, name: str, req: Request, run: Run, first_by: float, share: bool
    ) -> Done:
        """Stream one call to one backend until `first_by` for its first token (inline: see
        run.answered; `share`: a late backend's) and the end of the request's budget (and the
        inline bound) for the rest. The privacy rules are checked again right before it
        connects (a reload mid-request may have changed them): then it is skipped, not failed."""
        backend = self.backends.get(name)
        if backend is None:  # a config reload removed it while this request was under way
            raise Skipped("skipped: not configured (removed by a configuration reload)")
        if skip := self._privacy(name, run.documents):
            raise Skipped(skip)
        bound = inline_bound(run, req)
        if bound is not None and time.monotonic() >= bound:
            raise Skipped("skipped: the inline time bound (inline.max_ms) was spent", bound=True)
        run.cloud = run.cloud or not backend.is_local  # from now on, hold back to redact
        run.answer.use_prompt(fenced=backend.fences_prompt(req), template_seen=backend.is_local)
        self.upstream_requests += 1
        stream = backend.stream(req)
        start = time.monotonic()
        # The bound (inline.max_ms): when it passes, what has streamed is the answer.
        end_by = self._end(run) if bound is None else min(self._end(run), bound)
        got_token, deltas, events = False, 0, 0  # deltas: for the usage of a cut answer
        try:
            while True:
                deadline = end_by if got_token else min(first_by, end_by)
                try:
                    if time.monotonic() >= deadline:  # a stream that never suspends (a
                        raise TimeoutError  # flood of deltas) would never let the timeout fire
                    # asyncio.timeout: 3.11's wait_for can swallow a cancel, costs a task a token
                    async with asyncio.timeout_at(loop_time(deadline)):
                        event = await anext(stream)
                except StopAsyncIteration:
                    raise BackendError("stream ended without a result") from None
                except TimeoutError:
                    if bound is not None and deadline >= bound and got_token:
                        run.unusable = not whole_line(run)
                        return Done("length", 0, 0, name)  # what streamed is the answer
                    bound_s = None if bound is None else req.max_time_s or bound - run.start
                    total = self.config.timeouts.total_s if deadline >= self._end(run) else None
                    raise ran_out(
                        deadline, bound, bound_s, total, first_by - start, share
                    ) from None
                if (events := events + 1) % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the same flood: let other requests be served
                if isinstance(event, Held):  # set aside for an inline request: not its time
                    first_by += event.seconds
                    continue
                if isinstance(event, Done):
                    return event
                if isinstance(event, Delta) and event.text:
                    deltas += 1
                    done = take(event, req, run, name, deltas, backend.is_local)
                    if done is not None:
                        return done
                    got_token = got_token or bound is None or answered(run, share)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # closes the HTTP stream / stops local generation

    # --- circuit breaker --------------------------------------------------------------------
    def reset(self, name: str | None = None) -> None:
        """Forget the failures of one backend (or all): after a new key or config, a backend
        gets a fresh chance instead of sitting out its cooldown."""
        self.breakers.reset(name)

    def cooldown_ends(self) -> list[float]:
        """Monotonic times at which an open circuit turns half-open (status changes then)."""
        return self.breakers.cooldown_ends()


def is_local(router: Router, name: str) -> bool:
    return getattr(router.backends.get(name), "is_local", False)
