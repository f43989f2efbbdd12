"""The inline completion engine: one call per `textDocument/inlineCompletion`.

It knows nothing of LSP types or of models: the server hands it the document text and the
cursor, and a `generate` callable that runs the router and returns the final text. The engine
decides whether to ask at all (language settings, the cache), supersedes older requests for
the same document, cleans the output and shapes the items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlxd.config import InlineConfig, LanguageConfig
from mlxd.prompts import (
    COUNTS,
    CursorContext,
    Encoding,
    context_at,
    file_header,
    format_snippets,
    neighbor_snippets,
    normalize_encoding,
    offset_to_position,
    position_to_offset,
    starts_block,
    trim,
)
from mlxd.types import Request

from .cache import InlineCache
from .postprocess import clean

log = logging.getLogger(__name__)

Range = tuple[int, int, int, int]  # start_line, start_char, end_line, end_char (client encoding)
# `generate` returns the final text, or an object with `.text` and `.finish_reason` ("stop":
# the model ended or a stop matched; "length": a token or time cap cut it) such as the
# router's Outcome. A bare string counts as finished.
Generate = Callable[[Request, CursorContext], Awaitable[Any]]
Document = tuple[str, str, str]  # (uri, language, text)

# Extra items when the user asks (triggerKind Invoked), sampled at this temperature.
ALTERNATIVES = 2
ALT_TEMPERATURE = 0.8
# Lines above the cursor that neighbour snippets are matched against.
_NEAR_CHARS = 2000


def _loose_tokens(text: str) -> int:
    """A token count on the low side (5 characters a token) for the pre-trim."""
    return (len(text) + 4) // 5


@dataclass(frozen=True, slots=True)
class InlineItem:
    """One suggestion: replace `range` with `insert_text`."""

    insert_text: str
    range: Range


@dataclass(slots=True)
class EngineStats:
    requests: int = 0
    cache_hits: int = 0
    generations: int = 0  # calls to `generate`
    cancelled: int = 0  # generations stopped: superseded or cancelled by the client
    errors: int = 0  # generations that raised
    empty: int = 0  # answers with no item (nothing survived post-processing, or no answer)
    # Items shown whose last line a token/time cap cut (a piece of a word, a lone operator).
    fragments: int = 0


@dataclass(eq=False, slots=True)
class _Flight:
    """A generation in progress for one document."""

    task: asyncio.Future[str]
    superseded: bool = False


def _outer_cancelled() -> bool:
    """Whether the calling task itself is being cancelled (Python 3.11+ can tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


class InlineEngine:
    """Turns (document, cursor) into at most one clean suggestion.

    `generate(request, ctx)` is supplied by the server: it runs the router and returns the
    final text, raising on failure; it is cancelled (task cancel) when superseded. The
    request carries the time cap (`max_time_s` from `cfg.max_ms`, which the router applies);
    local backends render its prefix, suffix and header with the model's own tokenizer.
    """

    def __init__(
        self,
        cfg: InlineConfig,
        generate: Generate,
        *,
        cache: InlineCache | None = None,
        root: str | None = None,
        served_locally: Callable[[Any], bool] = lambda answer: True,
    ) -> None:
        self.cfg = cfg
        # Alternatives are sampled only after a local answer: there they reuse its KV cache and
        # cost decode only; from a cloud provider they would be two more paid requests.
        self.served_locally = served_locally
        self.root = root  # workspace root, for the relative path in the prompt header
        self.cache = cache if cache is not None else InlineCache()
        self.stats = EngineStats()
        self._generate = generate
        self._inflight: dict[str, _Flight] = {}

    # --- settings -------------------------------------------------------------------------
    def language_config(self, language: str) -> LanguageConfig:
        return self.cfg.languages.get(language) or LanguageConfig()

    def enabled_for(self, language: str) -> bool:
        return self.cfg.enabled and self.language_config(language).enabled

    def snapshot(self) -> dict[str, int]:
        """Counters for `mlxd/status` and the benchmark."""
        builds = {"context_builds": COUNTS["context_builds"], "trims": COUNTS["trims"]}
        return {**asdict(self.stats), "cache_misses": self.cache.misses, **builds}

    # --- the request ----------------------------------------------------------------------
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
        LSP triggerKind Invoked) adds up to ALTERNATIVES sampled items that differ from the first.
        """
        self.stats.requests += 1
        self._supersede(uri)  # the user has moved on: an older answer for this document is moot
        if not self.enabled_for(language):
            return []
        encoding = normalize_encoding(encoding)
        selection = selected_text is not None and selected_range is not None
        if selection:
            text, offset = _apply_selection(text, encoding, selected_text or "", selected_range)
        else:
            offset = position_to_offset(text, line, character, encoding)
        ctx = context_at(text, offset, uri=uri, language=language)
        ctx.single_line = ctx.single_line or self.language_config(language).single_line
        mode = self.cfg.multi_line
        if mode == "never" or (mode == "auto" and not starts_block(ctx)):
            ctx.max_lines = 1  # the rest of this line, or the next statement: fast to show
        if selection:
            rng: Range = selected_range  # type: ignore[assignment]
            lead = selected_text or ""
        else:
            pos = offset_to_position(text, offset, encoding)
            rng, lead = (*pos, *pos), ""

        suggestion = self.cache.lookup(uri, ctx.prefix, ctx.suffix)
        cached = suggestion is not None
        local = False  # whether a local model served the fresh answer
        if cached:
            self.stats.cache_hits += 1
        else:
            suggestion, local = await self._fresh(uri, ctx, neighbors)
        if not suggestion:
            self.stats.empty += 1
            return []
        shown = [suggestion]
        if invoked and not cached and local:  # typing through is free
            shown += await self._alternatives(ctx, suggestion)
        return [InlineItem(insert_text=lead + s, range=rng) for s in shown]

    async def _fresh(
        self, uri: str, ctx: CursorContext, neighbors: Iterable[Document]
    ) -> tuple[str | None, bool]:
        """A new suggestion from the model, cleaned and cached (None when no answer came), and
        whether a local model served it."""
        ctx.header = self._header(ctx, neighbors)
        answer = await self._run(ctx)
        if answer is None:
            return None, False
        raw, finish = _text_and_finish(answer)
        # A cap cut it: only finished lines are worth showing (unless told otherwise).
        cut = finish == "length" and self.cfg.whole_lines
        suggestion = clean(complete_lines(raw) if cut else raw, ctx)
        if cut and _ends_cut(raw, suggestion):
            self.stats.fragments += 1  # complete_lines keeps this at 0
        if suggestion or finish != "length":  # a cut "" may do better when asked again
            self.cache.store(uri, ctx.prefix, ctx.suffix, suggestion)
        return suggestion, self.served_locally(answer)

    def forget(self, uri: str) -> None:
        """A document was closed: stop its generation and drop its cache entries."""
        self._supersede(uri)
        self.cache.forget(uri)

    # --- internals ------------------------------------------------------------------------
    def _supersede(self, uri: str) -> None:
        flight = self._inflight.pop(uri, None)
        if flight is not None and not flight.task.done():
            flight.superseded = True
            flight.task.cancel()

    async def _alternatives(self, ctx: CursorContext, first: str) -> list[str]:
        """Up to ALTERNATIVES more suggestions, sampled at ALT_TEMPERATURE, distinct and whole.

        They run after the greedy answer, so its prompt is in the KV cache and they cost decode
        only, side by side in one batch.
        """
        ctx.header = ctx.header or self._header(ctx, ())
        request = replace(self._request(ctx), temperature=ALT_TEMPERATURE)
        answers = await self._run(ctx, [request] * ALTERNATIVES)
        seen = {first.strip()}
        out: list[str] = []
        for answer in answers or []:
            if answer is None or isinstance(answer, BaseException):
                continue
            raw, finish = _text_and_finish(answer)
            cut = finish == "length" and self.cfg.whole_lines
            text = clean(complete_lines(raw) if cut else raw, ctx)
            if text.strip() and text.strip() not in seen:
                seen.add(text.strip())
                out.append(text)
        return out

    def _request(self, ctx: CursorContext) -> Request:
        """The router's request, its prefix/suffix bounded so that nothing huge travels.

        The bound is loose (5 characters a token, more than code usually packs): the local
        backend trims again, exactly, with its model's tokenizer (`fim.prompt_for_local`), and
        should find the whole budget's worth of text. Both trims snap to the same line grid.
        """
        prefix, suffix = trim(ctx.prompt_prefix, ctx.suffix, self.cfg.context_tokens, _loose_tokens)
        return Request(
            kind="inline",
            prefix=prefix,
            suffix=suffix,
            language=ctx.language,
            header=ctx.header,
            max_tokens=self.cfg.max_tokens,
            temperature=0.0,
            stop=["\n"] if ctx.single_line else [],
            max_time_s=self.cfg.max_ms / 1000,
            max_lines=ctx.max_lines,
        )

    async def _run(self, ctx: CursorContext, requests: list[Request] | None = None) -> Any:
        """Await `generate` in its own task, so a newer request can cancel just that task.

        With `requests`, runs them side by side and returns their answers as a list (an
        exception in place of a failed one). Returns None when superseded or failed;
        re-raises when the caller is cancelled.
        """
        if requests is None:
            task = asyncio.ensure_future(self._generate(self._request(ctx), ctx))
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
            if flight.superseded and not _outer_cancelled():
                return None
            raise
        except Exception as exc:  # a failed inline completion shows nothing, quietly
            if flight.superseded:
                self.stats.cancelled += 1
            else:
                self.stats.errors += 1
                log.debug("inline generation failed for %s: %s", ctx.uri, exc)
            return None
        finally:
            if self._inflight.get(ctx.uri) is flight:
                del self._inflight[ctx.uri]

    def _header(self, ctx: CursorContext, neighbors: Iterable[Document]) -> str:
        """File path comment, preceded by neighbour snippets when enabled."""
        header = file_header(ctx.uri, ctx.language, self.root)
        if not (self.cfg.neighbor_snippets and header):
            return header
        line_start = len(ctx.prefix) - len(ctx.line_prefix)
        # Lines above the cursor line only: they change far less often than the cursor line.
        near = ctx.prefix[max(0, line_start - _NEAR_CHARS) : line_start]
        snippets = neighbor_snippets(
            neighbors,
            ctx.language,
            self.cfg.context_tokens // 2,
            near=near,
            exclude_uri=ctx.uri,
        )
        return format_snippets(snippets, ctx.language, self.root) + header


def _text_and_finish(answer: Any) -> tuple[str, str]:
    """(text, finish reason) of what `generate` returned; a bare string is finished."""
    if isinstance(answer, str):
        return answer, "stop"
    return answer.text, answer.finish_reason


def complete_lines(text: str) -> str:
    """`text` without its unfinished last line: what a token or time cap cut mid-line.

    A piece of a word or a lone operator is worse than nothing as ghost text; a line the model
    ended (a newline) is a complete unit. A cut that came before any newline leaves "".
    """
    text = text.replace("\r\n", "\n")
    return text[: text.rfind("\n") + 1]


def _ends_cut(raw: str, suggestion: str) -> bool:
    """Whether `suggestion` ends with the unfinished last line of a cut generation."""
    tail = raw.replace("\r\n", "\n").rsplit("\n", 1)[-1].rstrip()
    return bool(tail.strip() and suggestion.rstrip().endswith(tail.strip()))


def _apply_selection(
    text: str, encoding: Encoding, selected_text: str, selected_range: Range
) -> tuple[str, int]:
    """The document as if the selected popup item were accepted, and the cursor after it."""
    start_line, start_char, end_line, end_char = selected_range
    start = position_to_offset(text, start_line, start_char, encoding)
    end = max(start, position_to_offset(text, end_line, end_char, encoding))
    return text[:start] + selected_text + text[end:], start + len(selected_text)
