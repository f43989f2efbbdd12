"""Neighbour snippets that stay put while the user types (issue #17 item 4: open files).

The snippets open the prompt (the header: snippets, then the file path, then the code), so a
different pick is a different prompt from its first token, and the model's KV cache holds none
of it: the whole prompt is prefilled again. The pick is made from the lines above the cursor,
which change with every line typed; remade on each request, one line that shared more words with
another window of a neighbour swapped the snippet (a refill of ~850 tokens in the test).

So a document keeps its last pick while it is still worth its place:
- the words above the cursor are much the same as those it was made for (Jaccard >= STICKY) and
  the neighbours are the same, unchanged: kept without scoring anything;
- else, while every held snippet is still text of an open neighbour and the pick is still at
  least RELEVANT as relevant to the words above the cursor as a fresh pick would be (the sum of
  their Jaccard scores). Typing on in one place drifts the words slowly, and a comparison with
  the words of the pick's time alone re-picked every few lines (bench open-files: a full refill
  every ~7 requests, each to a pick no better than the one held).
A neighbour closed or edited under a held snippet, or a cursor moved where other windows match
far better, makes the pick again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlxd.prompts import Snippet, SnippetIndex, identifiers

# Least share of words the lines above the cursor keep with those the last pick was made for.
STICKY = 0.75
# Least relevance a held pick keeps, as a share of a fresh pick's (see the module docstring).
RELEVANT = 0.5


@dataclass(frozen=True, slots=True)
class _Pick:
    key: Any  # language, budget, neighbours and the index's generation it was made with
    words: frozenset[str]  # the identifiers near the cursor it was made for
    snippets: list[Snippet]


class StickySnippets:
    """`SnippetIndex.snippets`, per requesting document, kept while it is still worth its place
    (see the module docstring)."""

    def __init__(self, index: SnippetIndex) -> None:
        self.index = index
        self._picks: dict[str, _Pick] = {}

    def pick(
        self, uri: str, docs: Iterable[tuple[str, str, str]], language: str, budget: int, near: str
    ) -> list[Snippet]:
        """Snippets for document `uri` from `docs` (uri, language, text), within `budget`
        characters, matched on `near` (the lines above its cursor)."""
        docs = list(docs)
        self.index.snippets(docs, language, 0, exclude_uri=uri)  # indexes changed neighbours
        order = tuple(d[0] for d in docs if d[1] == language and d[0] != uri)
        key = (language, budget, order, self.index.generation)
        words = identifiers(near)
        held = self._picks.get(uri)
        if held is not None and held.key == key and _similar(held.words, words):
            return list(held.snippets)  # no new pick to score either
        fresh = self.index.snippets(docs, language, budget, near=near, exclude_uri=uri)
        if held is not None and held.key[:2] == key[:2] and self._worth(held, fresh, order, words):
            self._picks[uri] = _Pick(key, words, held.snippets)  # checked against these now
            return list(held.snippets)
        self._picks[uri] = _Pick(key, words, fresh)
        return fresh

    def forget(self, uri: str) -> None:
        self._picks.pop(uri, None)

    def _worth(
        self, held: _Pick, fresh: list[Snippet], order: tuple[str, ...], words: frozenset[str]
    ) -> bool:
        """Whether the held pick is still open neighbours' text, about as relevant to `words`
        as the `fresh` one."""
        if not all(s.uri in order and self.index.holds(s) for s in held.snippets):
            return False
        return _relevance(held.snippets, words) >= RELEVANT * _relevance(fresh, words)


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    union = len(a | b)
    return union == 0 or len(a & b) / union >= STICKY


def _relevance(snippets: list[Snippet], words: frozenset[str]) -> float:
    """The sum of the snippets' Jaccard scores against `words` (the ranking's own measure)."""
    total = 0.0
    for snippet in snippets:
        have = identifiers(snippet.text)
        union = len(words | have)
        total += len(words & have) / union if union else 0.0
    return total
