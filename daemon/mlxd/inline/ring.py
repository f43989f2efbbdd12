"""Code the user copied (a yank in Neovim, Ctrl+C in VS Code): a ring of chunks that
join the open documents as neighbour snippets (issue #16 item 5, llama.vim's ring).

Copied code is what the user is about to use: a function copied to write its sibling, a call
to adapt. It may come from far above in the same document (outside the prompt's window) or from
a document since closed, where the open documents' windows do not reach. Each copy is kept as
a chunk (its first CHUNK_LINES lines, at most CHUNK_CHARS characters) under a name of its own
(`mlxd-copy:N`), RING_CHUNKS at most (the least recently copied goes first); the same text
copied again changes nothing but its recency (a new name would reorder the snippets, and the
prompt's start with them: a refill of the KV cache), a copy much like a held one (Jaccard of
their lines >= SAME) replaces it. The chunks then compete with the open documents' windows for
the snippet budget, by the words they share with the lines above the cursor
(prompts/snippets.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlxd.prompts import CursorContext, Snippet

RING_CHUNKS = 16  # chunks kept (llama.vim's ring_n_chunks)
CHUNK_LINES = 64  # of a copy, its first lines (llama.vim's ring_chunk_size)
CHUNK_CHARS = 4000
MIN_CHARS = 24  # non-blank characters a copy needs: a word or two tells the model nothing
SAME = 0.9  # Jaccard of two chunks' lines above which the newer replaces the older
SCHEME = "mlxd-copy:"


@dataclass(frozen=True, slots=True)
class Chunk:
    name: str  # `mlxd-copy:N`: its name among the neighbour documents
    uri: str  # the document it was copied from
    language: str
    text: str


def chunk_of(text: str) -> str:
    """What of a copied `text` is kept: its first CHUNK_LINES lines, cut to CHUNK_CHARS at a
    line end (a single longer line is cut at CHUNK_CHARS), without blank lines at its ends."""
    text = text[: CHUNK_CHARS * 2].replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    lines = text.split("\n", CHUNK_LINES)[:CHUNK_LINES]
    kept = "\n".join(lines)
    if len(kept) > CHUNK_CHARS:
        end = kept.rfind("\n", 0, CHUNK_CHARS)
        kept = kept[: end if end > 0 else CHUNK_CHARS]
    return kept.strip("\n")


def _holds(other: str, text: str, earlier: bool) -> bool:
    """Whether a snippet `other` makes one of `text` redundant: it holds more than it, or the
    same and comes first."""
    return text in other and (text != other or earlier)


def _jaccard(a: str, b: str) -> float:
    x, y = set(a.splitlines()), set(b.splitlines())
    return len(x & y) / len(x | y) if x | y else 1.0


class CopyRing:
    """The chunks copied in one session, oldest first."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.taken = 0  # copies kept (mlxd/stats inline.copies)
        self._ids = itertools.count(1)
        self._copied: dict[str, int] = {}  # chunk name -> when it was last copied (a count)

    def add(self, uri: str, language: str, text: str) -> list[str]:
        """Keep a copy of `text` from document `uri`; returns the names of the chunks it
        dropped (replaced, or pushed out of the ring). A copy with fewer than MIN_CHARS
        non-blank characters is not kept."""
        kept = chunk_of(text)
        if sum(not c.isspace() for c in kept) < MIN_CHARS:
            return []
        self.taken += 1
        now = next(self._ids)
        for chunk in self.chunks:
            if (chunk.uri, chunk.language, chunk.text) == (uri, language, kept):
                self._copied[chunk.name] = now
                return []
        gone = [c for c in self.chunks if _jaccard(c.text, kept) >= SAME]
        self.chunks = [c for c in self.chunks if c not in gone]
        self.chunks.append(Chunk(f"{SCHEME}{now}", uri, language, kept))
        self._copied[self.chunks[-1].name] = now
        while len(self.chunks) > RING_CHUNKS:
            gone.append(min(self.chunks, key=lambda c: self._copied[c.name]))
            self.chunks.remove(gone[-1])
        for chunk in gone:
            del self._copied[chunk.name]
        return [c.name for c in gone]

    def source(self, name: str) -> str:
        """The document a neighbour named `name` comes from: a chunk's source, else `name`."""
        for chunk in self.chunks:
            if chunk.name == name:
                return chunk.uri
        return name

    def documents(self, allowed: Callable[[str], bool]) -> list[tuple[str, str, str]]:
        """The chunks as neighbour documents (name, language, text), of sources `allowed(uri)`,
        the last first copied first (a tie in the snippets' ranking goes to the earlier one;
        copied again, a chunk keeps its place)."""
        return [(c.name, c.language, c.text) for c in reversed(self.chunks) if allowed(c.uri)]

    def for_prompt(
        self, ctx: CursorContext, docs: Iterable[tuple[str, str, str]], window: int, budget: int
    ) -> list[tuple[str, str, str]]:
        """`docs` for the snippets at `ctx`: each chunk cut to its first lines within `budget`
        characters (a snippet is never longer; a first line longer than that leaves nothing),
        less the chunks copied from `ctx`'s document that are within the `window` characters
        before the cursor, which any prompt holds. (Text after the cursor is left in: a model
        without FIM is shown none of it; one copied from further up is shown twice at worst.)"""
        chunks = {c.name: c for c in self.chunks}
        held = ctx.prefix[-window:].replace("\r\n", "\n").replace("\r", "\n")
        out = []
        for doc in docs:
            chunk = chunks.get(doc[0])
            if chunk is None:
                out.append(doc)
                continue
            if chunk.uri == ctx.uri and chunk.text in held:
                continue
            text = doc[2]
            if len(text) > budget:
                text = text[: max(0, text.rfind("\n", 0, budget + 1))]
            if text.strip():
                out.append((doc[0], doc[1], text))
        return out

    def sources(self, snippets: Iterable[Snippet]) -> list[Snippet]:
        """`snippets` named after the documents they come from (a chunk's source), less those
        another one holds (a copy of an open document and that document's own window)."""
        picked = list(snippets)
        return [
            Snippet(self.source(s.uri), s.text)
            for i, s in enumerate(picked)
            if not any(_holds(o.text, s.text, j < i) for j, o in enumerate(picked) if j != i)
        ]
