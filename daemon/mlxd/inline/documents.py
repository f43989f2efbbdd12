"""The inline engine's document events (didOpen, didChange, didClose, mlxd/didMoveCursor,
mlxd/didCopy): what each one indexes, drops, warms (ahead.py) or keeps (ring.py), and the
prompt header the open documents and copies make."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from mlxd.prompts import (
    CursorContext,
    Encoding,
    file_header,
    format_snippets,
    normalize_encoding,
    position_to_offset,
)

if TYPE_CHECKING:
    from mlxd.config import Config, InlineConfig
    from mlxd.prompts import SnippetIndex

    from .ahead import Ahead
    from .cache import InlineCache
    from .engine import Document
    from .ring import CopyRing
    from .sticky import StickySnippets

# Lines above the cursor that neighbour snippets are matched against.
_NEAR_CHARS = 2000
# The text before the cursor that every prompt's window holds, as a share of context_tokens in
# characters: the prefix gets over half the budget once the header's quarter is out, and a
# token is a character at least. A copy of this document from there is in the prompt already.
_SURE_SHARE = 0.5


class DocumentEvents:
    """InlineEngine's document events (a mixin: the engine holds the state)."""

    cfg: InlineConfig
    ahead: Ahead
    cache: InlineCache
    snippets: SnippetIndex
    sticky: StickySnippets
    ring: CopyRing
    root: str | None
    _latest: dict[str, int]

    def _supersede(self, uri: str) -> Any: ...

    def forget(self, uri: str) -> None:
        """A document was closed: stop its generation and drop its cache entries."""
        self._latest.pop(uri, None)
        self._supersede(uri)
        self.ahead.forget(uri)
        self.cache.forget(uri)
        self.snippets.remove(uri)
        self.sticky.forget(uri)

    def reconfigured(self, old: Config, new: Config) -> None:
        """The settings changed from `old` to `new`: the suggestions cached under the old ones
        go (their length, lines, model may differ now), and so does the background work,
        unless only the bound or the whole-lines rule changed (a job applies both as it
        lands: it goes on)."""
        same = msgspec.structs.replace(
            new.inline, max_ms=old.inline.max_ms, whole_lines=old.inline.whole_lines
        )
        if msgspec.structs.replace(new, inline=same) != old:
            self.ahead.close()
        self.ahead.forget_items()
        self.cache.clear()

    def opened(
        self, uri: str, language: str, text: str, neighbors: Iterable[Document] = ()
    ) -> None:
        """didOpen: index the document for neighbour snippets, and warm the KV cache for the
        prompt at its end (ahead.py); `neighbors` as for `complete`."""
        if self.cfg.neighbor_snippets:
            self.snippets.update(uri, language, text)
            self.snippets.prepare(uri, self.cfg.context_tokens // 2)  # _header's budget
        self.ahead.opened(uri, language, text, neighbors)

    def changed(
        self,
        uri: str,
        language: str,
        text: str,
        edit: tuple[int, int, str] | None,
        encoding: Encoding | str = "utf-16",
        neighbors: Callable[[], Iterable[Document]] = tuple,
    ) -> None:
        """didChange: `text` is the new document, `edit` the last change's start (line,
        character in `encoding` units) and inserted text (None: a whole-document change).
        Drops stale background work; warms the edit's end once edits settle (`neighbors`
        is called then). The snippet index catches up when the document is next a neighbour."""
        end = None
        if edit is not None:  # found when edits settle, not per keystroke (a 50 MB document)
            line, character, inserted = edit
            enc = normalize_encoding(encoding)
            end = lambda: position_to_offset(text, line, character, enc) + len(inserted)  # noqa: E731
        self.ahead.changed(uri, language, text, end, neighbors)

    def moved(
        self,
        uri: str,
        language: str,
        text: str,
        position: tuple[int, int],
        encoding: Encoding | str = "utf-16",
        neighbors: Callable[[], Iterable[Document]] = tuple,
    ) -> None:
        """mlxd/didMoveCursor: the cursor is at `position` (line, character in `encoding`
        units) of `text`; its prompt is warmed once it rests (ahead.py)."""
        line, character = position
        enc = normalize_encoding(encoding)
        at = lambda: position_to_offset(text, line, character, enc)  # noqa: E731 (once it rests)
        self.ahead.moved(uri, language, text, at, neighbors)

    def copied(self, uri: str, language: str, text: str) -> None:
        """mlxd/didCopy: `text` was copied from document `uri`; kept as a neighbour chunk."""
        for name in self.ring.add(uri, language, text):
            self.snippets.remove(name)

    def _header(self, ctx: CursorContext, neighbors: Iterable[Document]) -> str:
        """File path comment, preceded by neighbour snippets when enabled: windows of the
        open documents and chunks of copied code, less a copy of this document that the text
        just before the cursor holds (every prompt has it)."""
        header = file_header(ctx.uri, ctx.language, self.root)
        if not (self.cfg.neighbor_snippets and header):
            return header
        line_start = len(ctx.prefix) - len(ctx.line_prefix)
        # Lines above the cursor line only: they change far less often than the cursor line.
        near = ctx.prefix[max(0, line_start - _NEAR_CHARS) : line_start]
        budget = self.cfg.context_tokens // 2
        window = int(_SURE_SHARE * self.cfg.context_tokens)
        docs = self.ring.for_prompt(ctx, neighbors, window, budget)
        snippets = self.sticky.pick(ctx.uri, docs, ctx.language, budget, near)
        return format_snippets(self.ring.sources(snippets), ctx.language, self.root) + header
