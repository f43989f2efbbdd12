"""Neighbour snippets that stay put while the user types (issue #17 item 4: open files).

The snippets open the prompt (the header: snippets, then the file path, then the code), so a
different pick is a different prompt from its first token, and the model's KV cache holds none
of it: the whole prompt is prefilled again. The pick is made from the lines above the cursor,
which change with every line typed; remade on each request, one line that shared more words with
another window of a neighbour swapped the snippet (a refill of ~850 tokens in the test). So a
document keeps its last pick while the words above its cursor are much the same as those it was
made for (Jaccard >= STICKY) and the neighbours are the same, unchanged; then it is made again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlxd.prompts import Snippet, SnippetIndex, identifiers

# Least share of words the lines above the cursor keep with those the last pick was made for.
STICKY = 0.75


@dataclass(frozen=True, slots=True)
class _Pick:
    key: Any  # language, budget, neighbours and the index's generation it was made with
    words: frozenset[str]  # the identifiers near the cursor it was made for
    snippets: list[Snippet]


class StickySnippets:
    """`SnippetIndex.snippets`, per requesting document, kept while its cursor's surroundings
    and its neighbours stay much the same (see the module docstring)."""

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
        self._picks[uri] = _Pick(key, words, fresh)
        return fresh

    def forget(self, uri: str) -> None:
        self._picks.pop(uri, None)


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    union = len(a | b)
    return union == 0 or len(a & b) / union >= STICKY
