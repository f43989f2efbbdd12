"""inline/ring.py: what of a copy is kept, which copies replace or push out others, and how the
chunks join the neighbour documents (the daemon's side: tests/e2e/test_copy_ring.py)."""

from __future__ import annotations

from mlxd.inline.ring import CHUNK_CHARS, CHUNK_LINES, RING_CHUNKS, CopyRing, chunk_of
from mlxd.prompts import Snippet, context_at

URI = "file:///w/app.py"
BODY = "def parse_header(raw):\n    value = raw.decode().strip()\n    return value.lower()\n"


def test_a_copy_keeps_its_first_lines_cut_at_a_line_end() -> None:
    text = "".join(f"line_{n} = {n}\n" for n in range(CHUNK_LINES + 10))
    kept = chunk_of("\n\n" + text)
    assert kept.splitlines() == text.splitlines()[:CHUNK_LINES]
    wide = "\n".join("x" * 900 for _ in range(10))  # 10 lines of 900: cut at the last line end
    assert chunk_of(wide) == "\n".join("x" * 900 for _ in range(4))
    assert len(chunk_of("y" * (3 * CHUNK_CHARS))) == CHUNK_CHARS  # one line: cut where it must
    assert chunk_of("a = 1\r\nb = 2\r") == "a = 1\nb = 2"


def test_a_word_or_two_is_not_kept_and_a_copy_again_replaces_the_first() -> None:
    ring = CopyRing()
    assert ring.add(URI, "python", "value\n   \n x") == [] and ring.chunks == []
    assert ring.add(URI, "python", BODY) == []
    first = ring.chunks[0].name
    assert ring.add(URI, "python", BODY + "\n") == [first]  # the same text: newest now
    assert len(ring.chunks) == 1 and ring.chunks[0].name != first and ring.taken == 2


def test_the_ring_keeps_the_newest_chunks() -> None:
    ring = CopyRing()
    for n in range(RING_CHUNKS + 2):
        ring.add(URI, "python", f"def handler_{n}(request):\n    return respond({n})\n")
    names = [c.name for c in ring.chunks]
    assert len(names) == RING_CHUNKS
    assert "handler_0" not in ring.chunks[0].text and "handler_2(" in ring.chunks[0].text
    docs = ring.documents(lambda uri: True)
    assert [d[0] for d in docs] == names[::-1]  # newest first
    assert ring.documents(lambda uri: uri != URI) == []  # an excluded source is left out


def test_chunks_are_cut_to_the_budget_named_after_their_source_and_left_out_in_the_window() -> None:
    ring = CopyRing()
    ring.add(URI, "python", BODY)
    ring.add("file:///w/other.py", "python", BODY.replace("header", "cookie"))
    docs = ring.documents(lambda uri: True)
    here = context_at(BODY + "\nx = ", len(BODY) + 5, uri=URI, language="python")
    kept = ring.for_prompt(here, docs + [("file:///w/b.py", "python", BODY * 9)], 4000, 1000)
    # This document's copy goes (the window holds it); an open document is not cut.
    assert kept == [docs[0], ("file:///w/b.py", "python", BODY * 9)]
    far = context_at("\n" * 10 + BODY + "z" * 5000 + "\nx = ", 5000, uri=URI, language="python")
    assert [d[0] for d in ring.for_prompt(far, docs, 100, 1000)] == [d[0] for d in docs]
    # Within the budget: its first lines (a first line longer than that leaves nothing).
    first = BODY.split("\n")[0]
    cut = ring.for_prompt(far, docs, 100, len(first) + 5)
    assert [d[2] for d in cut] == [first.replace("header", "cookie"), first]
    assert ring.for_prompt(far, docs, 100, len(first) - 1) == []
    named = ring.sources([Snippet(docs[1][0], "t"), Snippet("file:///w/b.py", "u")])
    assert [s.uri for s in named] == [URI, "file:///w/b.py"]
