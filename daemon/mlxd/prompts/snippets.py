"""Neighbour snippets: short windows of other open documents that share the cursor's words."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
SNIPPET_LINES = 20
# Characters at a document's start that its snippets are taken from (cut at a line end). The
# snippets fill a budget of about a thousand characters; indexing a 50 MB file whole stalled the
# event loop for seconds per didOpen (issue #17), a bounded head costs a few ms.
INDEXED_CHARS = 256_000


@dataclass(frozen=True, slots=True)
class Snippet:
    uri: str
    text: str


def _identifiers(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def identifiers(text: str) -> frozenset[str]:
    """The identifiers (3+ characters) snippets are matched on."""
    return frozenset(_IDENT.findall(text))


def _head(text: str) -> str:
    """The part of a document its snippets come from: its first INDEXED_CHARS characters, cut
    after the last line feed in them (a document without one is cut mid-line)."""
    if len(text) <= INDEXED_CHARS:
        return text
    return text[: text.rfind("\n", 0, INDEXED_CHARS) + 1 or INDEXED_CHARS]


def _windows(text: str, size: int) -> Iterable[str]:
    """Non-overlapping windows of `size` lines of the document's `_head` (the unit a snippet
    is picked in)."""
    lines = _head(text).splitlines()
    for i in range(0, len(lines), size):
        window = "\n".join(lines[i : i + size]).strip("\n")
        if window.strip():
            yield window


def neighbor_snippets(
    docs: Iterable[tuple[str, str, str]],
    language: str,
    budget_chars: int,
    *,
    near: str = "",
    exclude_uri: str = "",
) -> list[Snippet]:
    """Short snippets from other open documents of the same language, best first.

    `docs` is (uri, language, text) for each open document; only its first INDEXED_CHARS
    (`_head`) are candidates. With `near` (text around the
    cursor), windows are ranked by how many identifiers they share with it (Jaccard), the
    cheap signal Copilot-style "neighbouring tabs" use; without it, each file's head (imports,
    definitions) is taken. Pass a `near` that does not change on every keystroke (e.g. the
    prefix without its last line): the snippets open the prompt, and a changing opening
    defeats the KV cache.
    """
    if budget_chars <= 0:
        return []
    wanted = _identifiers(near)
    scored: list[tuple[float, int, Snippet]] = []
    for order, (uri, lang, text) in enumerate(docs):
        if lang != language or uri == exclude_uri:
            continue
        for window in _windows(text, SNIPPET_LINES):
            if wanted:
                have = _identifiers(window)
                score = len(wanted & have) / len(wanted | have) if have else 0.0
                if score == 0.0:
                    continue
            else:
                score = 0.0
            scored.append((score, order, Snippet(uri, window)))
            if not wanted:
                break  # one head per file
    scored.sort(key=lambda item: (-item[0], item[1]))
    picked: list[Snippet] = []
    left = budget_chars
    for _, _, snippet in scored:
        if len(snippet.text) <= left:
            picked.append(snippet)
            left -= len(snippet.text)
    return picked


@dataclass(slots=True)
class _Indexed:
    """One document's windows, their identifiers, and an inverted index over them."""

    language: str
    text: str  # the text last seen: the same object means the document did not change
    head: str  # its `_head`, the part indexed: an equal head needs no new index
    windows: list[str]
    idents: list[frozenset[str]]  # the identifiers in each window
    lengths: list[int]  # characters in each window
    postings: dict[str, list[int]]  # identifier -> the windows it occurs in, ascending
    _fitting: tuple[int, dict[str, list[int]]] | None = None

    def fitting(self, budget: int) -> dict[str, list[int]]:
        """`postings` without the windows longer than `budget` characters (kept per budget)."""
        if self._fitting is None or self._fitting[0] != budget:
            lengths = self.lengths
            kept = {w: [i for i in at if lengths[i] <= budget] for w, at in self.postings.items()}
            self._fitting = (budget, {w: at for w, at in kept.items() if at})
        return self._fitting[1]


def _index(language: str, text: str, known: dict[str, frozenset[str]]) -> _Indexed:
    """`known` (window text -> identifiers, from the document's last index) saves re-scanning
    the windows an edit did not touch."""
    head = _head(text)
    windows = list(_windows(head, SNIPPET_LINES))
    idents = [known.get(w) or frozenset(_identifiers(w)) for w in windows]
    postings: dict[str, list[int]] = {}
    for i, found in enumerate(idents):
        for ident in found:
            postings.setdefault(ident, []).append(i)
    lengths = [len(w) for w in windows]
    return _Indexed(language, text, head, windows, idents, lengths, postings)


class SnippetIndex:
    """`neighbor_snippets` without scanning every open document on every request.

    Each document's head (its first INDEXED_CHARS) is split into windows and indexed
    (identifier -> windows) when it is seen with a new head (`update` on didOpen/didChange, or lazily by `snippets`); a request then
    scores only the windows that share an identifier with the cursor's surroundings. The
    result is exactly `neighbor_snippets`'s for the same arguments.
    """

    def __init__(self) -> None:
        self._by_uri: dict[str, _Indexed] = {}
        self._memo: tuple[Any, list[Snippet]] | None = None  # the last answer, by its inputs
        self._generation = 0  # bumped by every change to the index

    def __len__(self) -> int:
        return len(self._by_uri)

    @property
    def generation(self) -> int:
        """Bumped by every change to the index: an equal value means the same windows."""
        return self._generation

    def update(self, uri: str, language: str, text: str) -> None:
        """Index a document's text (a no-op when it is the text already indexed)."""
        old = self._by_uri.get(uri)
        if old is not None and old.language == language and old.text is text:
            return
        if old is not None and old.language == language and old.head == _head(text):
            old.text = text  # an edit past the indexed head, or the same text again
            return
        known = dict(zip(old.windows, old.idents, strict=True)) if old is not None else {}
        self._by_uri[uri] = _index(language, text, known)
        self._generation += 1

    def prepare(self, uri: str, budget_chars: int) -> None:
        """Build a document's postings for `budget_chars` now (didOpen), not on a request."""
        if (doc := self._by_uri.get(uri)) is not None:
            doc.fitting(budget_chars)

    def holds(self, snippet: Snippet) -> bool:
        """Whether `snippet` is still one of its document's windows, as indexed."""
        doc = self._by_uri.get(snippet.uri)
        return doc is not None and snippet.text in doc.windows

    def remove(self, uri: str) -> None:
        if self._by_uri.pop(uri, None) is not None:
            self._generation += 1

    def snippets(
        self,
        docs: Iterable[tuple[str, str, str]],
        language: str,
        budget_chars: int,
        *,
        near: str = "",
        exclude_uri: str = "",
    ) -> list[Snippet]:
        """`neighbor_snippets(docs, ...)`, from the index. Only `docs` are candidates; one
        whose text is not the one indexed is indexed first (the others stay indexed until
        `remove`: a document is no neighbour of its own requests)."""
        docs = list(docs)
        for uri, lang, text in docs:
            if lang == language and uri != exclude_uri:
                self.update(uri, lang, text)
        if budget_chars <= 0:
            return []
        order = [u for u, lang, _ in docs if lang == language and u != exclude_uri]
        key = (language, budget_chars, near, order, self._generation)
        if self._memo is not None and self._memo[0] == key:
            return list(self._memo[1])
        picked = self._pick(docs, language, budget_chars, near, exclude_uri)
        self._memo = (key, picked)
        return list(picked)

    def _pick(
        self,
        docs: list[tuple[str, str, str]],
        language: str,
        budget_chars: int,
        near: str,
        exclude_uri: str,
    ) -> list[Snippet]:
        wanted = _identifiers(near)
        # (-score, document order, window, the snippet or its document's uri)
        scored: list[tuple[float, int, int, Snippet | str]] = []
        for order, (uri, lang, _) in enumerate(docs):
            if lang != language or uri == exclude_uri:
                continue
            doc = self._by_uri[uri]  # a blank document has no windows
            if not wanted:
                if doc.windows:  # one head per file
                    scored.append((-0.0, order, 0, Snippet(uri, doc.windows[0])))
                continue
            postings = doc.fitting(budget_chars)  # a longer window is never picked
            shared = Counter(chain.from_iterable(postings.get(w, ()) for w in wanted))
            idents = doc.idents
            for i, n in shared.items():
                scored.append((-n / (len(wanted) + len(idents[i]) - n), order, i, uri))
        scored.sort()  # best first; ties in document order, then window order
        picked: list[Snippet] = []
        left = budget_chars
        for _, _, i, ref in scored:
            window = ref.text if isinstance(ref, Snippet) else self._by_uri[ref].windows[i]
            if len(window) <= left:
                picked.append(ref if isinstance(ref, Snippet) else Snippet(ref, window))
                left -= len(window)
        return picked
