"""Cursor context: LSP positions over non-ASCII text, trimming to a token budget, snippets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlxd.prompts import (
    SNAP_LINES,
    approx_tokens,
    column_to_offset,
    context_at,
    cursor_context,
    neighbor_snippets,
    offset_to_position,
    position_to_offset,
    starts_block,
    trim,
)

EMOJI = "\U0001f600"  # 😀: 1 code point, 2 UTF-16 units, 4 UTF-8 bytes


# --- positions ----------------------------------------------------------------------------
def test_ascii_position_splits_prefix_and_suffix() -> None:
    ctx = cursor_context("def f(x):\n    return x\n", 1, 11)
    assert ctx.prefix == "def f(x):\n    return "
    assert ctx.suffix == "x\n"
    assert (ctx.line_prefix, ctx.line_suffix, ctx.indent) == ("    return ", "x", "    ")


def test_emoji_counts_two_utf16_units() -> None:
    text = f"s = '{EMOJI}' + t"
    # UTF-16 column 7 is right after the emoji (5 units before it + 2 for it).
    ctx = cursor_context(text, 0, 7)
    assert ctx.line_prefix == f"s = '{EMOJI}"
    assert ctx.line_suffix == "' + t"


def test_emoji_in_utf8_and_utf32_encodings() -> None:
    text = f"s = '{EMOJI}' + t"
    assert cursor_context(text, 0, 9, encoding="utf-8").line_prefix == f"s = '{EMOJI}"
    assert cursor_context(text, 0, 6, encoding="utf-32").line_prefix == f"s = '{EMOJI}"


def test_cjk_is_one_utf16_unit_and_three_utf8_bytes() -> None:
    text = "名前 = 1"
    assert cursor_context(text, 0, 2).line_prefix == "名前"
    assert cursor_context(text, 0, 6, encoding="utf-8").line_prefix == "名前"


def test_combining_mark_is_its_own_code_unit() -> None:
    text = "cafe\u0301 = 1"  # "café" spelled with a combining acute accent
    assert cursor_context(text, 0, 4).line_prefix == "cafe"
    assert cursor_context(text, 0, 5).line_prefix == "cafe\u0301"


def test_column_inside_a_surrogate_pair_rounds_down() -> None:
    assert column_to_offset(f"{EMOJI}x", 1) == 0
    assert column_to_offset(f"{EMOJI}x", 2) == 1


def test_column_past_line_end_clamps_to_line_end() -> None:
    ctx = cursor_context("ab\ncd\n", 0, 99)
    assert ctx.prefix == "ab"
    assert ctx.suffix == "\ncd\n"


def test_line_past_document_end_clamps_to_document_end() -> None:
    ctx = cursor_context("ab\ncd", 7, 3)
    assert ctx.prefix == "ab\ncd"
    assert ctx.suffix == ""


def test_crlf_and_lone_cr_end_lines() -> None:
    text = "one\r\ntwo\rthree"
    assert cursor_context(text, 1, 1).line_prefix == "t"
    assert cursor_context(text, 1, 1).line_suffix == "wo"
    assert cursor_context(text, 2, 5).line_prefix == "three"


def test_form_feed_is_not_a_line_break_for_lsp() -> None:
    # str.splitlines would split here; LSP does not.
    ctx = cursor_context("a\x0cb\nc", 0, 3)
    assert ctx.line_prefix == "a\x0cb"


def test_single_line_when_code_follows_the_cursor() -> None:
    assert cursor_context("print()", 0, 6).single_line is True
    assert cursor_context("x = 1   \n", 0, 5).single_line is False  # only whitespace after
    assert cursor_context("x = 1\ny", 0, 5).single_line is False


def test_offset_to_position_inverts_position_to_offset_on_an_example() -> None:
    text = f"a\n{EMOJI}b\r\nc"
    offset = text.index("b") + 1
    assert offset_to_position(text, offset) == (1, 3)
    assert position_to_offset(text, 1, 3) == offset


_chars = st.sampled_from(["a", " ", "\n", "\r\n", "\r", EMOJI, "名", "e\u0301", "\t", "\x0c"])


@given(st.lists(_chars, max_size=30), st.data())
def test_position_round_trip_and_utf16_columns(pieces: list[str], data: st.DataObject) -> None:
    text = "".join(pieces)
    offsets = [i for i in range(len(text) + 1) if not (text[i - 1 : i + 1] == "\r\n")]
    offset = data.draw(st.sampled_from(offsets))
    for encoding in ("utf-16", "utf-8", "utf-32"):
        line, character = offset_to_position(text, offset, encoding)
        assert position_to_offset(text, line, character, encoding) == offset
    line, character = offset_to_position(text, offset)
    ctx = cursor_context(text, line, character)
    assert character == len(ctx.line_prefix.encode("utf-16-le")) // 2


# --- trim ---------------------------------------------------------------------------------
def _lines(word: str, n: int) -> str:
    return "".join(f"{word} {i}\n" for i in range(n))


def test_trim_keeps_everything_that_fits() -> None:
    assert trim("a = 1\nb = ", "\nc = 3\n", 1000) == ("a = 1\nb = ", "\nc = 3\n")


def test_trim_keeps_text_nearest_the_cursor_on_line_boundaries() -> None:
    prefix = _lines("before", 500) + "    x = "
    suffix = "\n" + _lines("after", 500)
    p, s = trim(prefix, suffix, 200)
    assert prefix.endswith(p) and suffix.startswith(s)
    assert p.endswith("before 499\n    x = ")
    assert p.startswith("before ")  # a whole line, not half of one
    assert s.endswith("\n")
    assert approx_tokens(p) + approx_tokens(s) <= 200


def test_trim_gives_the_prefix_about_three_quarters() -> None:
    p, s = trim(_lines("before", 500), _lines("after", 500), 400)
    assert 0.6 * 400 <= approx_tokens(p) <= 0.75 * 400
    assert 0.2 * 400 <= approx_tokens(s) <= 400 - approx_tokens(p)


def test_trim_hands_unused_suffix_budget_to_the_prefix() -> None:
    p, s = trim(_lines("before", 500), "\n}\n", 400)
    assert s == "\n}\n"
    assert approx_tokens(p) > 0.8 * 400


def test_trim_hands_unused_prefix_budget_to_the_suffix() -> None:
    p, s = trim("x = ", _lines("after", 500), 400)
    assert p == "x = "
    assert approx_tokens(s) > 0.8 * 400


def test_trim_window_start_stays_put_while_typing() -> None:
    """The prompt's opening must not move on every keystroke, or the KV cache is useless."""
    base = _lines("before", 500) + "    total = "
    starts = set()
    for typed in ["", "c", "co", "cou", "coun", "count", "count(", "count(x"]:
        p, _ = trim(base + typed, "", 300)
        starts.add(p.split("\n", 1)[0])
    assert len(starts) == 1
    first_line = int(starts.pop().split()[1])
    assert first_line % SNAP_LINES == 0


def test_trim_suffix_end_stays_put_while_typing() -> None:
    """Codestral puts the suffix first: its end must not move on every keystroke either."""
    suffix = "\n" + _lines("after", 500)
    ends = set()
    for typed in ["", "c", "co", "cou", "coun", "count"]:
        _, s = trim(_lines("before", 20) + "    total = " + typed, suffix, 300)
        ends.add(s.rsplit("\n", 2)[-2])
    assert len(ends) == 1


def test_trim_uses_the_given_token_counter() -> None:
    calls: list[str] = []

    def words(text: str) -> int:
        calls.append(text)
        return len(text.split()) + text.count("\n")

    p, s = trim(_lines("w", 100), _lines("v", 100), 60, words)
    assert calls
    assert words(p) + words(s) <= 60
    assert words(p) > 3 * 60 // 4 - 10  # the prefix got its share under this counter


def test_trim_counts_only_about_the_budget_of_a_huge_document() -> None:
    calls = 0

    def count(text: str) -> int:
        nonlocal calls
        calls += 1
        return approx_tokens(text)

    trim(_lines("before", 100_000), _lines("after", 100_000), 256, count)
    assert calls < 400


def test_trim_cuts_one_huge_line_by_characters() -> None:
    prefix = "x = [" + "1, " * 10_000
    p, s = trim(prefix, "]\n", 100)
    assert prefix.endswith(p) and p
    assert approx_tokens(p) + approx_tokens(s) <= 100


# --- neighbour snippets -------------------------------------------------------------------
DOCS = [
    ("file:///p/util.py", "python", "def parse_header(line):\n    return line.split(':')\n"),
    ("file:///p/other.py", "python", "def unrelated_thing():\n    return 42\n"),
    ("file:///p/app.js", "javascript", "function parse_header(line) { return line }\n"),
    ("file:///p/main.py", "python", "import util\nutil.parse_header(line)\n"),
]


def test_neighbor_snippets_rank_by_shared_identifiers_in_the_same_language() -> None:
    near = "for line in lines:\n    key = parse_header(line)\n"
    got = neighbor_snippets(DOCS, "python", 1000, near=near, exclude_uri="file:///p/main.py")
    assert [s.uri for s in got] == ["file:///p/util.py"]
    assert "def parse_header" in got[0].text


def test_neighbor_snippets_without_near_take_each_file_head_within_budget() -> None:
    got = neighbor_snippets(DOCS, "python", 80, exclude_uri="file:///p/main.py")
    assert [s.uri for s in got] == ["file:///p/util.py"]  # the second one does not fit
    assert sum(len(s.text) for s in got) <= 80
    assert neighbor_snippets(DOCS, "python", 0) == []


# --- where a block starts -----------------------------------------------------------------
def test_starts_block_at_openers_headers_and_blank_lines_below_an_opener() -> None:
    def at(doc: str) -> bool:  # `┃` marks the cursor
        return starts_block(context_at(doc.replace("┃", ""), doc.index("┃")))

    assert at("def add(a, b):┃")
    assert at("items = [┃")
    assert at("fn main() {\n    ┃")
    assert at("if ready:\n\n    ┃\n")  # blank lines in between
    assert at("xs.each do┃")
    # A header being typed: the rest of its line first; its body at the line's end.
    assert not at("    def add┃")
    assert not at("async def fetch┃")
    assert not at("for item in ite┃")
    assert not at("class AbstractMat┃")
    assert not at("if x ==┃")
    assert not at("total = 0┃")
    assert not at("total = 0\n┃")
    assert not at("print(┃)")  # text after the cursor: one line
    assert not at("definition = 1┃")  # `def` only as a word
    assert not at("┃")


def test_a_small_window_is_not_snapped_down_to_the_cursor_line() -> None:
    # 17 lines, room for 7 (one token each): snapping the start up to a multiple of 8 lines
    # would keep only the last one; a tight time budget makes such small windows common.
    prefix = "".join(f"line{i}\n" for i in range(16)) + "cursor"
    kept, _ = trim(prefix, "", 7, lambda s: 1)
    assert kept.endswith("line15\ncursor")
    assert kept.count("\n") >= 5
