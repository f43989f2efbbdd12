"""The neighbour-snippet index (issue #17 item 4) answers exactly what the per-request scan
(`neighbor_snippets`) answers, also after documents change, close and reopen."""

from __future__ import annotations

import random

import pytest

from mlxd.prompts import SnippetIndex, neighbor_snippets

WORDS = ["self", "value", "items", "total", "index", "name", "result", "count", "data", "key"]


def random_doc(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.1:
            out.append("")  # blank lines: windows of whitespace are skipped
        elif kind < 0.2:
            out.append("    # " + " ".join(rng.choices(["ab", "x", "yy"], k=3)))  # no idents
        else:
            out.append("    " + " = ".join(rng.choices(WORDS, k=rng.randint(1, 4))))
    return "\n".join(out)


def nears(rng: random.Random) -> list[str]:
    return ["", "x = 1", *(" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(6))]


def same(index: SnippetIndex, docs, language, budget, near, exclude) -> None:
    want = neighbor_snippets(docs, language, budget, near=near, exclude_uri=exclude)
    assert index.snippets(docs, language, budget, near=near, exclude_uri=exclude) == want


@pytest.mark.parametrize("seed", range(6))
def test_the_index_equals_the_per_request_scan(seed: int) -> None:
    rng = random.Random(seed)
    docs = [
        (f"file:///p/{i}.py", "python" if i % 4 else "lua", random_doc(rng, rng.randint(0, 90)))
        for i in range(6)
    ]
    index = SnippetIndex()
    for uri, lang, text in docs[:3]:  # some opened (indexed at didOpen), the rest lazily
        index.update(uri, lang, text)
    for near in nears(rng):
        for budget in (0, 40, 300, 5000):
            for exclude in ("", docs[1][0]):
                same(index, docs, "python", budget, near, exclude)
                same(index, docs, "lua", budget, near, exclude)


def test_the_index_follows_changes_closes_and_reopens() -> None:
    rng = random.Random(7)
    docs = [(f"file:///p/{i}.py", "python", random_doc(rng, 80)) for i in range(4)]
    index = SnippetIndex()
    for doc in docs:
        index.update(*doc)
    near = "total = count = items"
    same(index, docs, "python", 400, near, "")
    # didChange: an edit in one window, then a line inserted (every later window shifts)
    uri, lang, text = docs[2]
    docs[2] = (uri, lang, text.replace("total", "grand_total", 1))
    same(index, docs, "python", 400, near, "")
    docs[2] = (uri, lang, "total = 1\n" + docs[2][2])
    same(index, docs, "python", 400, near, "")
    same(index, docs, "python", 400, near, "")  # the memo: same answer, same inputs
    # didClose then didOpen again: it comes last in the editor's order now
    closed = docs.pop(0)
    index.remove(closed[0])
    same(index, docs, "python", 400, near, "")
    docs.append(closed)
    index.update(*closed)
    same(index, docs, "python", 400, near, "")
    # the language changed (languageId in a reopen)
    docs[1] = (docs[1][0], "lua", docs[1][2])
    same(index, docs, "python", 400, near, "")
    same(index, docs, "lua", 400, near, "")


def test_an_edited_text_is_reindexed_even_when_equal_lengths() -> None:
    index = SnippetIndex()
    docs = [("file:///a.py", "python", "alpha = beta\n")]
    same(index, docs, "python", 100, "alpha", "")
    docs = [("file:///a.py", "python", "gamma = beta\n")]
    same(index, docs, "python", 100, "alpha", "")
    assert index.snippets(docs, "python", 100, near="alpha") == neighbor_snippets(
        docs, "python", 100, near="alpha"
    )


def test_a_huge_document_is_indexed_by_its_head_only_and_equals_the_scan() -> None:
    """A 50 MB didOpen indexed whole stalled the event loop for seconds (issue #17): only the
    first INDEXED_CHARS are candidates, for the scan and the index alike, and an edit past
    them needs no new index."""
    from mlxd.prompts import snippets as mod

    rng = random.Random(3)
    head = random_doc(rng, 200)
    filler = "    unrelated_word = 1\n" * (mod.INDEXED_CHARS // 20)
    tail = "    needle_name = needle_value\n" * 50  # beyond the head: never a candidate
    docs = [("file:///big.py", "python", head + "\n" + filler + tail)]
    assert len(docs[0][2]) > mod.INDEXED_CHARS
    index = SnippetIndex()
    index.update(*docs[0])
    for near in ("needle_name needle_value", "total count", "unrelated_word", ""):
        same(index, docs, "python", 2000, near, "")
    assert neighbor_snippets(docs, "python", 2000, near="needle_name needle_value") == []
    indexed = index._by_uri["file:///big.py"]
    docs[0] = ("file:///big.py", "python", docs[0][2] + "more = 1\n")  # an edit past the head
    same(index, docs, "python", 2000, "total count", "")
    assert index._by_uri["file:///big.py"] is indexed  # not indexed again
    one_line = ("x" * (mod.INDEXED_CHARS + 10)) + " total"  # no line feed: cut mid-line
    docs = [("file:///min.js", "python", one_line)]
    for near in ("total", "", "x" * 10):
        same(index, docs, "python", 10**6, near, "")
