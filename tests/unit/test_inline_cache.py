"""The suggestion cache: exact hits, typing-through, bounds, counters."""

from __future__ import annotations

import tracemalloc

from mlxd.inline.cache import InlineCache

URI = "file:///p/a.py"


def test_exact_position_hits() -> None:
    cache = InlineCache()
    cache.store(URI, "def f", "\n", "oo(x):")
    assert cache.lookup(URI, "def f", "\n") == "oo(x):"
    assert (cache.hits, cache.misses) == (1, 0)


def test_typing_through_returns_the_rest_of_the_suggestion() -> None:
    cache = InlineCache()
    cache.store(URI, "def f", "\n", "oo(x):")
    assert cache.lookup(URI, "def fo", "\n") == "o(x):"
    assert cache.lookup(URI, "def foo(", "\n") == "x):"
    assert cache.lookup(URI, "def foo(x)", "\n") == ":"
    assert cache.stats.typed_through == 3


def test_typing_through_across_a_newline_and_indentation() -> None:
    cache = InlineCache()
    cache.store(URI, "def f():", "", "\n    return 1")
    assert cache.lookup(URI, "def f():\n    ", "") == "return 1"


def test_fully_typed_suggestion_is_a_miss() -> None:
    cache = InlineCache()
    cache.store(URI, "def f", "\n", "oo")
    assert cache.lookup(URI, "def foo", "\n") is None
    assert cache.misses == 1


def test_typing_something_else_is_a_miss() -> None:
    cache = InlineCache()
    cache.store(URI, "def f", "\n", "oo(x):")
    assert cache.lookup(URI, "def fa", "\n") is None


def test_a_changed_suffix_or_another_document_is_a_miss() -> None:
    cache = InlineCache()
    cache.store(URI, "def f", "\n", "oo(x):")
    assert cache.lookup(URI, "def fo", "\nx = 1\n") is None
    assert cache.lookup("file:///p/b.py", "def fo", "\n") is None
    assert cache.lookup(URI, "class A:\n def fo", "\n") is None  # an edit above the cursor


def test_the_newest_matching_entry_wins() -> None:
    cache = InlineCache()
    cache.store(URI, "x = ", "", "1 + 2")
    cache.store(URI, "x = 1", "", " + 3")
    assert cache.lookup(URI, "x = 1 ", "") == "+ 3"


def test_an_empty_suggestion_answers_only_its_exact_position() -> None:
    cache = InlineCache()
    cache.store(URI, "x = ", "", "")
    assert cache.lookup(URI, "x = ", "") == ""
    assert cache.lookup(URI, "x = 1", "") is None


def test_bounded_lru_evicts_the_least_recently_used() -> None:
    cache = InlineCache(max_entries=3)
    for i in range(3):
        cache.store(URI, f"p{i}", "", f"s{i}")
    assert cache.lookup(URI, "p0", "") == "s0"  # p0 is now the most recent
    cache.store(URI, "p3", "", "s3")
    assert len(cache) == 3
    assert cache.lookup(URI, "p1", "") is None
    assert cache.lookup(URI, "p0", "") == "s0"


def test_forget_drops_one_document() -> None:
    cache = InlineCache()
    cache.store(URI, "a", "", "b")
    cache.store("file:///p/b.py", "a", "", "c")
    cache.forget(URI)
    assert cache.lookup(URI, "a", "") is None
    assert cache.lookup("file:///p/b.py", "a", "") == "c"


def test_entries_hold_no_copy_of_the_document() -> None:
    # Each keystroke in a big file stores an entry whose prefix and suffix are new strings as
    # long as the file: kept as keys, 256 keystrokes in a 50 MB file held 12.8 GB (attack,
    # session 25). Typing-through and exact hits must still work from what is kept.
    cache = InlineCache()
    body = "x = 1\n" * 40_000  # 240 KB
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(64):
            prefix = body + f"y{i} = "  # a new 240 KB string, as each request makes
            cache.store(URI, prefix, body[:1000] + "\n", "foo(1)")
            del prefix
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, held  # 64 entries; the texts were 15 MB
    assert cache.lookup(URI, body + "y7 = ", body[:1000] + "\n") == "foo(1)"
    assert cache.lookup(URI, body + "y63 = fo", body[:1000] + "\n") == "o(1)"
    assert cache.lookup(URI, body + "y63 = fo", body[:999] + "\n") is None  # another suffix
    assert cache.lookup(URI, "z" + body[1:] + "y63 = fo", body[:1000] + "\n") is None  # edited


def test_typing_through_needs_the_same_text_not_only_the_same_length() -> None:
    cache = InlineCache()
    cache.store(URI, "abc = ", "", "foo(1)")
    assert cache.lookup(URI, "abd = fo", "") is None
    assert cache.lookup(URI, "abc = fo", "") == "o(1)"
