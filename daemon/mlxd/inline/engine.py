"""The inline completion engine: one call per `textDocument/inlineCompletion`.

It knows nothing of LSP types or of models: the server hands it the document text and the
cursor, and a `generate` callable that runs the router and returns the final text. The engine
decides whether to ask at all (language settings, the cache), supersedes older requests for
the same document, cleans the output and shapes the items.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlxd.config import InlineConfig, LanguageConfig
from mlxd.errors import AllFailed
from mlxd.models import BLOCK_LINE_TOKENS, StopPolicy
from mlxd.prompts import (
    COUNTS,
    CursorContext,
    Encoding,
    SnippetIndex,
    apply_selection,
    context_at,
    normalize_encoding,
    offset_to_position,
    position_to_offset,
    starts_block,
)
from mlxd.types import GoOn, Request

from .ahead import Ahead, Runner
from .alternatives import alternatives
from .cache import InlineCache
from .cuts import answer_by, cleaned
from .documents import DocumentEvents
from .items import EngineStats, InlineItem, Range
from .jobs import cancelling
from .rerank import Score
from .ring import CopyRing
from .sticky import StickySnippets
from .why import explained, note

# `generate` returns the final text, or an object with `.text` and `.finish_reason` ("stop":
# the model ended or a stop matched; "length": a token or time cap cut it) such as the
# router's Outcome. A bare string counts as finished.
Generate = Callable[[Request, CursorContext], Awaitable[Any]]
Document = tuple[str, str, str]  # (uri, language, text)


@dataclass(eq=False, slots=True)
class _Flight:
    """A generation in progress for one document."""

    task: asyncio.Future[str]
    superseded: bool = False


class InlineEngine(DocumentEvents):
    """Turns (document, cursor) into at most one clean suggestion.

    `generate(request, ctx)` is supplied by the server: it runs the router and returns the
    final text, raising on failure; it is cancelled (task cancel) when superseded. The
    request carries the time cap (`max_time_s` from `cfg.max_ms`, which the router applies)
    and the prompt budget; the backend that serves it trims and renders its prefix, suffix and
    header, once.
    """

    def __init__(
        self,
        cfg: InlineConfig,
        generate: Generate,
        *,
        cache: InlineCache | None = None,
        root: str | None = None,
        served_locally: Callable[[Any], bool] = lambda answer: True,
        local_first: Callable[[str], bool] = lambda uri: True,
        background: Runner | None = None,
        score: Score | None = None,
    ) -> None:
        self.cfg = cfg
        # Alternatives only from a local model (an answer it served, or for a cached item the
        # document's first choice): KV reuse makes them cheap; a provider would bill two more.
        self.served_locally, self.local_first = served_locally, local_first
        self.root = root  # workspace root, for the relative path in the prompt header
        self.cache = cache if cache is not None else InlineCache()
        self.stats = EngineStats()
        self._generate = generate
        self.score = score  # a local model's log-likelihoods, for reranking (rerank.py)
        self._inflight: dict[str, _Flight] = {}
        self._latest: dict[str, int] = {}  # each open document's latest request (its ticket)
        # Work ahead (next suggestion, KV warm-up) through `background`: local models only.
        self.ahead = Ahead(self, background)
        self.snippets = SnippetIndex()  # open documents, indexed for neighbour snippets
        self.sticky = StickySnippets(self.snippets)  # each document's pick, kept (KV reuse)
        self.ring = CopyRing()  # copied code, neighbour snippets too (mlxd/didCopy)

    # --- settings -------------------------------------------------------------------------
    def language_config(self, language: str) -> LanguageConfig:
        return self.cfg.languages.get(language) or LanguageConfig()

    def enabled_for(self, language: str) -> bool:
        return self.cfg.enabled and self.language_config(language).enabled

    def snapshot(self) -> dict[str, int]:
        """Counters for `mlxd/status` and the benchmark."""
        builds = {"context_builds": COUNTS["context_builds"], "trims": COUNTS["trims"]}
        stats = {**asdict(self.stats), "cache_misses": self.cache.misses, **builds}
        stats["copies"] = self.ring.taken
        return {**stats, **self.ahead.snapshot()}

    # --- the request ----------------------------------------------------------------------
    @explained
    async def complete(
        self,
        text: str,
        line: int,
        character: int,
        *,
        uri: str,
        language: str,
        encoding: Encoding | str = "utf-16",
        selected_text: str | None = None,
        selected_range: Range | None = None,
        neighbors: Iterable[Document] = (),
        invoked: bool = False,
    ) -> list[InlineItem]:
        """Items for the cursor at (line, character) in `encoding` units; [] if none is good.

        `selected_text`/`selected_range` are LSP's selectedCompletionInfo: the suggestion then
        continues the selected popup item and replaces its range. `neighbors` are the other
        open documents (for snippets, when `cfg.neighbor_snippets`). `invoked` (the user asked:
        LSP triggerKind Invoked) adds up to alternatives.ALTERNATIVES sampled items that differ from the first.
        """
        arrived = time.monotonic()  # inline.max_ms is measured from here, for every backend
        bound_ms = self.cfg.max_ms  # this request's bound, whatever a reload sets meanwhile
        self.stats.requests += 1
        self._latest[uri] = ticket = self.stats.requests
        self._supersede(uri)  # the user has moved on: an older answer for this document is moot
        self.ahead.asked(uri)
        if not self.enabled_for(language):
            return []
        encoding = normalize_encoding(encoding)
        selection = selected_text is not None and selected_range is not None
        if selection:
            text, offset = apply_selection(text, encoding, selected_text or "", selected_range)
        else:
            offset = position_to_offset(text, line, character, encoding)
        ctx = self.context_for(text, offset, uri, language)
        if selection:
            rng, lead = selected_range, selected_text or ""  # type: ignore[assignment]
        else:
            pos = offset_to_position(text, offset, encoding)
            rng, lead = (*pos, *pos), ""
        found = await self._from_cache(uri, ctx, arrived, ticket, invoked)
        if found is None:  # a newer request here, or closed, meanwhile
            return []
        suggestion, hit = found
        cached, local, go = suggestion is not None, False, None  # local, go: as _fresh's
        if cached:
            self.stats.cache_hits += hit
            local = self.ahead.hit(uri, ctx.prefix, ctx.suffix)  # accepted: work ahead again
        else:
            fresh = self._fresh(uri, ctx, neighbors, arrived, selection, invoked)
            suggestion, local, go = await fresh
        shown = [suggestion] if suggestion else []
        if shown and invoked and (self.local_first(uri) if cached else local):
            shown += await alternatives(self, ctx, suggestion, arrived, go)  # type: ignore[arg-type]
        self._timed(arrived, bound_ms, bool(shown))
        if shown and local and not selection:
            self.ahead.after(ctx, suggestion, neighbors, go)  # type: ignore[arg-type]
        return [InlineItem(insert_text=lead + s, range=rng) for s in shown]

    async def _from_cache(
        self, uri: str, ctx: CursorContext, arrived: float, ticket: int, invoked: bool
    ) -> tuple[str | None, bool] | None:
        """The suggestion cached at `ctx`, or made there by work ahead (ahead.join: maybe
        still running), and whether that is a cache hit; (None, False): none; None: a newer
        request for the document, or its didClose, came meanwhile. `invoked` (the user asked)
        passes over an empty one: the model tries again where its last answer, maybe from a
        prompt a time cap cut short, had nothing to show."""
        if invoked and self.cache.peek(uri, ctx.prefix, ctx.suffix) == "":
            self.cache.discard(uri, ctx.prefix, ctx.suffix)
        suggestion = self.cache.lookup(uri, ctx.prefix, ctx.suffix)
        if suggestion is not None:
            return suggestion, True
        suggestion = await self.ahead.join(uri, ctx.prefix, ctx.suffix, arrived, whole=not invoked)
        if self._latest.get(uri) != ticket:
            return None
        return suggestion, bool(suggestion)  # "": the work was not done in time, no hit

    def _timed(self, arrived: float, bound_ms: int, answered: bool) -> None:
        """Counts an answer `arrived` seconds ago, late when past `bound_ms` (the request's own
        inline.max_ms: a reload meanwhile does not change it)."""
        ms = (time.monotonic() - arrived) * 1000
        self.stats.slowest_ms = max(self.stats.slowest_ms, round(ms))
        self.stats.late += ms > bound_ms
        self.stats.empty += not answered

    async def _fresh(
        self,
        uri: str,
        ctx: CursorContext,
        neighbors: Iterable[Document],
        arrived: float,
        selection: bool = False,
        invoked: bool = False,
    ) -> tuple[str | None, bool, GoOn | None]:
        """A new suggestion from the model, cleaned and cached (None when no answer came, or
        a newer request for the document or its didClose came while it waited for its block),
        whether a local model served it (and work ahead may follow it), and, for a suggestion
        shown without a `selection`, its generation going on past it (types.GoOn: the next
        suggestion's text; else None). At a block start it asks for the first line only, and
        the rest of the block goes on in the background, shown too as far as it is stored by
        the bound (unless `invoked`: the alternatives take what is left of it); so does an
        answer the bound cut before a line ended (inline/rest.py). With a `selection` (the
        popup's item), no work ahead after it."""
        ctx.header = self._header(ctx, neighbors)
        request = self._request(ctx, arrived)
        # Only where the rest can go on: a local model, work ahead on (a cloud model never
        # works in the background, and it answers a whole block fast).
        local = self.ahead.enabled and self.local_first(uri)
        block = local and ctx.max_lines is None and not ctx.single_line
        if block:  # a block start (multi-line mode): its first line now, the rest after it
            request = replace(request, max_lines=1, line_tokens=BLOCK_LINE_TOKENS)
        if local:  # its generation goes on with the next line (the next suggestion, the rest)
            request = replace(request, go_on=self.ahead.going_on(ctx))
        ticket, latest = self.stats.requests, self._latest.get(uri)
        answer = await self._run(ctx, request)
        # The first line only: a token that ends it may carry the next line's start.
        first = replace(ctx, max_lines=1) if block else ctx
        suggestion = None if answer is None else self.keep_answer(first, answer)
        in_time = answer is None and time.monotonic() < request.deadline  # type: ignore[operator]
        go, took, left = request.go_on, False, True  # took: a block's rest goes on from it
        if ticket == self.stats.requests and not in_time:  # not superseded, not failed early
            took = self.ahead.go_on(ctx, answer, suggestion, block, go if block else None)
            if block and suggestion and not invoked:  # the block, as far as stored in time
                suggestion, left = await self.ahead.block_by(ctx, suggestion, request.deadline)
                if self._latest.get(uri) != latest:  # a newer request here, or didClose
                    suggestion, left = None, False  # nothing for a place the user has left
        # left: its rest job was left alone (else newer work stopped it: none after this one)
        local = answer is not None and self.served_locally(answer) and left
        if go is not None and not took and (block or not (suggestion and local and not selection)):
            go.stop()  # nobody will accept it: no next suggestion after it
        return (None if answer is None else suggestion), local, None if block or took else go

    def context_for(self, text: str, offset: int, uri: str, language: str) -> CursorContext:
        """The cursor context at a code-point offset, with this engine's line settings."""
        ctx = context_at(text, offset, uri=uri, language=language)
        ctx.single_line = ctx.single_line or self.language_config(language).single_line
        mode = self.cfg.multi_line
        if mode == "never" or (mode == "auto" and not starts_block(ctx)):
            ctx.max_lines = 1  # the rest of this line, or the next statement: fast to show
        return ctx

    def keep_answer(self, ctx: CursorContext, answer: Any) -> str | None:
        """A generation's answer cleaned and cached at `ctx`; the suggestion ("" for none)."""
        done = cleaned(answer, ctx, self.cfg.whole_lines)
        self.stats.fragments += done.fragment
        if done.text or done.final:  # a cut "" may do better when asked again
            self.cache.store(ctx.uri, ctx.prefix, ctx.suffix, done.text)
        return done.text

    # --- internals ------------------------------------------------------------------------
    def _supersede(self, uri: str) -> None:
        flight = self._inflight.pop(uri, None)
        if flight is not None and not flight.task.done():
            flight.superseded = True
            flight.task.cancel()

    def _request(self, ctx: CursorContext, arrived: float | None = None) -> Request:
        """The router's request, to be answered by inline.max_ms after the request `arrived`
        (monotonic; None: no deadline, the router applies max_time_s from when it gets it).

        It carries the whole text around the cursor and the budget (`context_tokens`): the
        backend that serves it trims it once, as it counts tokens (a local model with its
        tokenizer, a provider loosely: prompts.fit_window).
        """
        policy = StopPolicy.inline(ctx.single_line, ctx.max_lines)
        return Request(
            kind="inline",
            prefix=ctx.prompt_prefix,
            suffix=ctx.suffix,
            language=ctx.language,
            header=ctx.header,
            context_tokens=self.cfg.context_tokens,
            max_tokens=self.cfg.max_tokens,
            temperature=0.0,
            stop=policy.strings,
            max_time_s=self.cfg.max_ms / 1000,
            deadline=None if arrived is None else arrived + answer_by(self.cfg.max_ms),
            max_lines=policy.max_lines,
        )

    async def _run(self, ctx: CursorContext, requests: Request | list[Request]) -> Any:
        """Await `generate` in its own task, so a newer request can cancel just that task.

        With a list of requests, runs them side by side and returns their answers as a list
        (an exception in place of a failed one). Returns None when superseded or failed;
        re-raises when the caller is cancelled.
        """
        if isinstance(requests, Request):
            task = asyncio.ensure_future(self._generate(requests, ctx))
        else:
            many = (self._generate(r, ctx) for r in requests)
            task = asyncio.ensure_future(asyncio.gather(*many, return_exceptions=True))
        flight = _Flight(task)
        self._inflight[ctx.uri] = flight
        self.stats.generations += 1
        try:
            return await task
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            task.cancel()  # the client cancelled us: stop the generation too
            if flight.superseded and not cancelling():
                return None
            raise
        except Exception as exc:  # a failed inline completion shows nothing, quietly
            if flight.superseded:
                self.stats.cancelled += 1
            elif isinstance(exc, AllFailed) and exc.out_of_time:
                self.stats.out_of_time += 1
                note("no token by inline.max_ms: the model had no time to answer")
            else:
                self.stats.errors += 1
                note(f"the generation failed: {type(exc).__name__}: {exc}")
            return None
        finally:
            if self._inflight.get(ctx.uri) is flight:
                del self._inflight[ctx.uri]
