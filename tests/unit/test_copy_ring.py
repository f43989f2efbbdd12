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


def test_a_word_is_not_kept_the_same_text_again_changes_nothing_a_near_one_replaces() -> None:
    ring = CopyRing()
    assert ring.add(URI, "python", "value\n   \n x") == [] and ring.chunks == []
    assert ring.add(URI, "python", BODY) == []
    held = list(ring.chunks)
    # Copied again (Ctrl+C twice, a second yy): the same chunk, the same name (the snippets'
    # order, and the prompt's start, stay put).
    assert ring.add(URI, "python", BODY + "\n") == [] and ring.chunks == held and ring.taken == 2
    near = BODY + "    value = value\n"  # 3 of its 4 lines shared
    wide = "\n".join(f"line_{n} = compute({n})" for n in range(30))
    ring.add(URI, "python", wide)
    replaced = ring.chunks[-1].name
    assert ring.add(URI, "python", wide + "\nline_30 = compute(30)") == [replaced]  # 30 of 31
    assert len(ring.chunks) == 2 and ring.chunks[-1].text.endswith("line_30 = compute(30)")
    assert ring.add(URI, "python", near) == []  # another chunk
    assert len(ring.chunks) == 3


def test_the_ring_keeps_the_most_recently_copied_chunks() -> None:
    ring = CopyRing()
    for n in range(RING_CHUNKS + 2):
        ring.add(URI, "python", f"def handler_{n}(request):\n    return respond({n})\n")
        if n == 5:  # handler_0 copied again: it outlives handler_1 and handler_2
            ring.add(URI, "python", "def handler_0(request):\n    return respond(0)\n")
    names = [c.name for c in ring.chunks]
    assert len(names) == RING_CHUNKS
    texts = " ".join(c.text for c in ring.chunks)
    assert "handler_0(" in texts and "handler_1(" not in texts and "handler_2(" not in texts
    docs = ring.documents(lambda uri: True)
    assert [d[0] for d in docs] == names[::-1]  # newest first, by when each was first copied
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
    crlf = BODY.replace("\n", "\r\n") + "\r\nx = "
    assert ring.for_prompt(context_at(crlf, len(crlf), uri=URI), docs, 4000, 1000) == [docs[0]]
    # Beyond the window's sure reach, or after the cursor (a model without FIM sees none of
    # it), this document's copy stays.
    far = "\n" * 10 + BODY + "z" * 5000 + "\nx = "
    assert len(ring.for_prompt(context_at(far, 5000, uri=URI), docs, 100, 1000)) == 2
    below = "x = \n" + BODY
    assert len(ring.for_prompt(context_at(below, 3, uri=URI), docs, 4000, 1000)) == 2
    # Within the budget: its first lines (a first line longer than that leaves nothing).
    first = BODY.split("\n")[0]
    cut = ring.for_prompt(context_at(far, 5000, uri=URI), docs, 100, len(first) + 5)
    assert [d[2] for d in cut] == [first.replace("header", "cookie"), first]
    assert ring.for_prompt(context_at(far, 5000, uri=URI), docs, 100, len(first) - 1) == []


def test_snippets_are_named_after_their_source_and_shown_once() -> None:
    ring = CopyRing()
    ring.add(URI, "python", BODY)
    name = ring.chunks[0].name
    picked = [
        Snippet(name, BODY.strip("\n")),
        Snippet("file:///w/b.py", BODY.strip("\n")),  # an open document's same window
        Snippet("file:///w/c.py", "x = 1\n" + BODY),  # holds the copy: the copy goes
        Snippet("file:///w/d.py", "other = 2"),
    ]
    shown = ring.sources(picked)
    assert [s.uri for s in shown] == ["file:///w/c.py", "file:///w/d.py"]
    assert [s.uri for s in ring.sources(picked[:2])] == [URI]  # the first of equal ones stays
