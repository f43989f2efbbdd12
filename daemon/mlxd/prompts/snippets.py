"""Neighbour snippets: short windows of other open documents that share the cursor's words."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
SNIPPET_LINES = 20


@dataclass(frozen=True, slots=True)
class Snippet:
    uri: str
    text: str


def _identifiers(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def _windows(text: str, size: int) -> Iterable[str]:
    """Non-overlapping windows of `size` lines (the unit a snippet is picked in)."""
    lines = text.splitlines()
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

    `docs` is (uri, language, text) for each open document. With `near` (text around the
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
        if lang != language or uri == exclude_uri or not text.strip():
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
