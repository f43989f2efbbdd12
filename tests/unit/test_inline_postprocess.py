"""Post-processing: each rule on crafted model outputs, then `clean` as a whole.

Documents are written with `┃` where the cursor is.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlxd.inline.cuts import cleaned
from mlxd.inline.postprocess import (
    clean,
    clean_why,
    cut_at_dedent,
    cut_at_suffix,
    drop_blank,
    drop_duplicate_of_next_line,
    drop_looping_line,
    drop_reclosed_brackets,
    drop_repeated_lines,
    strip_trailing_whitespace,
)
from mlxd.prompts import CursorContext, context_at

CURSOR = "┃"


def at(doc: str) -> CursorContext:
    return context_at(doc.replace(CURSOR, ""), doc.index(CURSOR), language="python")


# --- single rules -------------------------------------------------------------------------
def test_clean_keeps_one_line_where_one_is_asked_for() -> None:
    ctx = at("total = 0┃\n")
    ctx.max_lines = 1
    assert clean("\nprint(total)\nprint(1)", ctx) == "\nprint(total)"


def test_strip_trailing_whitespace_on_each_line_and_at_the_end() -> None:
    assert strip_trailing_whitespace("x = 1   \n    y = 2\t\n\n  \n") == "x = 1\n    y = 2"
    assert strip_trailing_whitespace("\n    return 1") == "\n    return 1"  # leading kept


def test_strip_trailing_whitespace_keeps_the_end_that_runs_into_the_line() -> None:
    assert strip_trailing_whitespace("a + ", keep_end=True) == "a + "
    assert strip_trailing_whitespace("x  \na + ", keep_end=True) == "x\na + "


def test_cut_at_suffix_drops_the_overlap_with_the_rest_of_the_line() -> None:
    ctx = at('if name == "┃"):\n    pass\n')
    assert cut_at_suffix('admin"):', ctx) == "admin"


def test_cut_at_suffix_keeps_a_closer_the_completion_opened_itself() -> None:
    ctx = at("print(┃)\n")
    assert cut_at_suffix("foo()", ctx) == "foo()"  # print(foo()) needs both
    assert cut_at_suffix("foo(x))", ctx) == "foo(x)"


def test_cut_at_suffix_quote_that_closes_a_string_opened_before() -> None:
    ctx = at('x = "┃"\n')
    assert cut_at_suffix('hello"', ctx) == "hello"
    assert cut_at_suffix('a" + "b"', ctx) == 'a" + "b'


def test_cut_at_suffix_stops_before_the_next_document_line() -> None:
    ctx = at("def f(x):\n    ┃\n    return y\n")
    assert cut_at_suffix("y = x * 2\n    return y\n\ndef g():", ctx) == "y = x * 2"


def test_cut_at_dedent_below_the_cursor_block() -> None:
    ctx = at("def f(x):\n    y = 1\n    ┃\n")
    assert cut_at_dedent("return y\n\ndef g():\n    pass", ctx) == "return y\n"
    assert cut_at_dedent("y += 1\n    return y\nprint(1)", ctx) == "y += 1\n    return y"


def test_cut_at_dedent_after_a_block_opener_keeps_only_the_body() -> None:
    ctx = at("def f(x):┃\n")
    assert cut_at_dedent("\n    return x\n\ndef g():\n    pass", ctx) == "\n    return x\n"


def test_cut_at_dedent_when_the_completion_itself_opens_the_block() -> None:
    ctx = at("    ┃\n")
    assert cut_at_dedent("for i in x:\n        y += i\n    return y", ctx) == (
        "for i in x:\n        y += i"
    )
    ctx = at("def add┃\n")
    assert cut_at_dedent("(a, b):\n    return a + b\nprint(1)", ctx) == "(a, b):\n    return a + b"


# On a blank line the model may write the indentation itself (a line break healed: at column 0,
# or deeper than the editor indented): the block is measured from the line as it will read.
@pytest.mark.parametrize("pad", ["", "  ", "\t"])
def test_cut_at_dedent_measures_a_blank_cursor_line_from_the_indentation_written(pad) -> None:
    ctx = at(f"class P:\n    def __init__(self, x, y):\n{pad}┃\n")
    written = "        self.x = x\n        self.y = y\n\n    def norm(self):\n        return 0"
    assert cut_at_dedent(written[len(pad.expandtabs(4)) :], ctx) == (
        written[len(pad.expandtabs(4)) :].split("\n\n")[0] + "\n"
    )
    ctx = at(f"def add(a, b):\n    total = a + b\n{pad}┃")
    shown = {"": "    return total", "  ": "  return total", "\t": "return total"}[pad]
    assert clean("    return total\n\ndef main():\n    print(add(1, 2))", ctx) == shown


def test_cut_at_dedent_keeps_the_closing_bracket_line_of_the_block() -> None:
    ctx = at("function f() {┃\n")
    got = cut_at_dedent("\n  return 1;\n}\n\nfunction g() {\n}", ctx)
    assert got == "\n  return 1;\n}"


def test_drop_repeated_lines_cuts_a_loop_of_one_line() -> None:
    ctx = at("def f():\n    ┃\n")
    assert drop_repeated_lines("x = 1\n    y = 2\n    y = 2\n    y = 2", ctx) == (
        "x = 1\n    y = 2"
    )


def test_drop_repeated_lines_cuts_a_loop_of_a_block() -> None:
    ctx = at("┃\n")
    text = "a = f()\nb = g(a)\na = f()\nb = g(a)\na = f()"
    assert drop_repeated_lines(text, ctx) == "a = f()\nb = g(a)"


def test_drop_repeated_lines_counts_the_line_above_the_cursor() -> None:
    ctx = at("import os\n┃\n")
    assert drop_repeated_lines("import os\nimport os", ctx) == ""


def test_drop_repeated_lines_leaves_blank_lines_and_distinct_lines_alone() -> None:
    ctx = at("┃\n")
    text = "a = 1\n\n\nb = 2"
    assert drop_repeated_lines(text, ctx) == text


def test_drop_reclosed_brackets_cuts_at_the_closer_the_suffix_has() -> None:
    assert drop_reclosed_brackets('"hi");', ")") == '"hi"'
    assert drop_reclosed_brackets("3, 4]", "]") == "3, 4"
    assert drop_reclosed_brackets("f(x), y", ")") == "f(x), y"  # balanced: nothing to drop
    assert drop_reclosed_brackets("x]", ")") == "x]"  # a different closer: not ours to judge
    assert drop_reclosed_brackets("x)", "") == "x)"


def test_drop_reclosed_quote() -> None:
    assert drop_reclosed_brackets('hi");', '")') == "hi"
    assert drop_reclosed_brackets('a" + "b', '"') == 'a" + "b'


def test_drop_duplicate_of_next_line() -> None:
    ctx = at("def f():\n    ┃\n\n    return x\n")
    assert drop_duplicate_of_next_line("return x", ctx) == ""
    assert drop_duplicate_of_next_line("x = 1", ctx) == "x = 1"
    ctx = at("def f():\n    ret┃\n    return x\n")
    assert drop_duplicate_of_next_line("urn x", ctx) == ""


def test_drop_blank() -> None:
    assert drop_blank("  \n\t") == ""
    assert drop_blank(" x") == " x"


# --- clean, end to end on a context -------------------------------------------------------
def test_clean_single_line_mode_stops_at_the_first_newline_and_the_suffix() -> None:
    ctx = at("total = sum(┃)\n")
    assert ctx.single_line
    assert clean("values)\nprint(total)\n", ctx) == "values"


def test_clean_prefix_only_model_that_retyped_the_whole_line() -> None:
    ctx = at('print(f"{name┃}")\n')
    assert clean('.upper()}")', ctx) == ".upper()"


def test_clean_keeps_the_space_before_the_rest_of_the_line() -> None:
    ctx = at("x = ┃y\n")
    assert clean("a + y", ctx) == "a + "


def test_clean_multi_line_body() -> None:
    ctx = at("def area(r):┃\n\nprint(area(2))\n")
    raw = "\n    return 3.14159 * r * r   \n\n\ndef perimeter(r):\n    return 2 * r"
    assert clean(raw, ctx) == "\n    return 3.14159 * r * r"


def test_clean_drops_whitespace_only_and_duplicates() -> None:
    ctx = at("x = 1\n┃\ny = 2\n")
    assert clean("   \n  ", ctx) == ""
    assert clean("y = 2\nz = 3", ctx) == ""
    assert clean("w = 0", ctx) == "w = 0"


def test_clean_handles_crlf_model_output() -> None:
    ctx = at("def f():┃\n")
    assert clean("\r\n    return 1\r\n", ctx) == "\n    return 1"


def test_clean_takes_a_lone_cr_as_a_line_break() -> None:
    # VS Code splits an item at a lone "\r" (CI: Alt+] showed the item's lines swapped);
    # Neovim shows it as "^M". Both see "\n" now, and the line rules see the line.
    ctx = at("def f():┃\n")
    assert clean("\r    return 1\rx = 2", ctx) == "\n    return 1"


def test_clean_drops_characters_no_editor_shows_as_code() -> None:
    ctx = at("x = ┃")
    # C0 controls (NUL, ESC of an ANSI colour), DEL, a C1 control, the detokenizer's U+FFFD.
    assert clean("a\x00b\x1b[31mc\x7fd\x85e\ufffdf", ctx) == "ab[31mcdef"
    assert clean("\ta\tb", at("def f():\n┃")) == "\ta\tb"  # tabs stay


def test_cleaned_cut_answer_keeps_lines_ended_by_a_lone_cr() -> None:
    answer = SimpleNamespace(text="\r    return 1\r    retu", finish_reason="length")
    assert cleaned(answer, at("def f():┃\n"), whole_lines=True)[0] == "\n    return 1"


@pytest.mark.parametrize(
    ("text", "finish", "final"),
    [
        # A cap cut it after a whole line that leaves the block the cursor is in: more of the
        # answer would be dropped too. Before, "" was not cached, and the request after the
        # accept asked the model again for 0.6-1.4 s to learn the same.
        ("\n\n    for x in y:\n        pa", "length", True),
        ("\n    return\n", "length", True),  # the next line, repeated: dropped whatever follows
        ("\n  ", "length", False),  # only a blank line before the cut: more may show
        ("    retu", "length", False),  # the cut came before a line ended
        ("", "stop", True),  # the model ended there
        ("\n        x = 1", "stop", True),
    ],
)
def test_a_cut_answer_is_final_when_whole_lines_were_emptied(
    text: str, finish: str, final: bool
) -> None:
    ctx = at("def f():\n    if a:\n        return 1┃\n    return\n")
    answer = SimpleNamespace(text=text, finish_reason=finish)
    done = cleaned(answer, ctx, whole_lines=True)
    assert done.final is final, done
    # Without whole_lines a cut answer is shown as it is: only the model's own end is final.
    assert cleaned(answer, ctx, whole_lines=False).final is (finish != "length")


_pieces = st.sampled_from(
    [
        "x",
        " ",
        "  ",
        "\n",
        "\r",
        "\x00",
        "\ufffd",
        "\t",
        ")",
        "(",
        "]",
        "}",
        '"',
        ":",
        "y = 1",
        "    ",
        "<|endoftext|>",
    ]
)
_docs = st.sampled_from(
    ["def f():┃\n", "print(┃)\n", "x = 1\n┃\ny = 2\n", "    ┃", 'a = "┃"', "┃", "f(x┃, y)\n"]
)


@given(st.lists(_pieces, max_size=25), _docs)
def test_clean_output_invariants(pieces: list[str], doc: str) -> None:
    """Whatever the model says: no blank result, no dangling whitespace, one line mid-line."""
    ctx = at(doc)
    got = clean("".join(pieces), ctx)
    if got:
        assert got.strip()
        lines = got.split("\n")
        assert all(line == line.rstrip() for line in lines[: -1 if ctx.single_line else None])
    if ctx.single_line:
        assert "\n" not in got
    assert "<|endoftext|>" not in got
    assert not set(got) & {"\r", "\x00", "\ufffd"}


def test_drop_looping_line_cuts_a_line_that_stutters() -> None:
    # The demo's last branch (session 10) and a Lua single-line hole of bench quality.
    ctx = at("def fib(n):\n    ┃\n")
    body = "a = fib(n - 1)\n    fib_res = fib_res = fib_res = fib(n-1) + fib_res\n    return a"
    assert drop_looping_line(body, ctx) == "a = fib(n - 1)"
    lua = at('local s = h .. ":" ┃\n')
    assert drop_looping_line('.. w.path .. ":" .. w.path .. ":" .. w.path', lua) == ""


def test_drop_looping_line_counts_the_cursor_line_as_it_will_read() -> None:
    ctx = at("    x = y = ┃\n")
    assert drop_looping_line("x = y = x = y = 1", ctx) == ""


def test_drop_looping_line_leaves_the_users_own_text_alone() -> None:
    mine = at("    fib = fib = fib = fib = ┃\n")
    assert drop_looping_line("1", mine) == "1"  # the loop is all before the cursor


@pytest.mark.parametrize(
    ("language", "line_prefix", "completion"),
    [
        # Repetition in real code (an attack scanned 3M real lines: these idioms were 1,857 of
        # the 1,861 lines the first rule took for loops): lists, type arguments, attribute
        # chains, escapes, format strings, regexes, tables.
        ("python", "ROOT = Path(__file__).parent", '.parent.parent / "data"'),
        ("python", "BASE_DIR = os.path.dirname(", "os.path.dirname(os.path.dirname(f)))"),
        ("python", "    def bbox(self) -> tuple[", "float, float, float, float]:"),
        ("python", 'MAGIC = b"', '\\x00\\x00\\x00\\x01"'),
        ("python", '    cur.execute("INSERT INTO t VALUES (', '%s, %s, %s, %s)", row)'),
        ("python", "    mask = ", "[False, False, False, True]"),
        ("python", "    zeros = ", "(0, 0, 0, 0, 0, 0)"),
        ("python", "    key = ", '"deadbeefdeadbeefdeadbeef"'),
        ("python", "    m = ", r're.match(r"(\d+)\.(\d+)\.(\d+)\.(\d+)", s)'),
        ("python", "    z = ", "array([0.+0.j, 0.+0.j, 0.+0.j, 1.+0.j])"),
        ("typescript", "type Grid = ", "Array<Array<Array<number>>>;"),
        ("javascript", "  return ", "[buf[i++], buf[i++], buf[i++], buf[i++]];"),
        ("c", '    printf("', '%d %d %d %d\\n", a, b, c, d);'),
        ("c", "void sgemv_(", "char *, char *, char *, int *);"),
        ("lua", "---@return ", "integer, integer, integer, integer"),
        ("lua", "local r, g, b = s:match(", "'^#(%x%x)(%x%x)(%x%x)$')"),
        ("sql", "INSERT INTO t VALUES (", "NULL, NULL, NULL, NULL);"),
        ("markdown", "", "| ghost text | yes | yes | yes |"),
    ],
)
def test_drop_looping_line_leaves_repetition_in_real_code_alone(
    language: str, line_prefix: str, completion: str
) -> None:
    ctx = context_at(line_prefix + "\n", len(line_prefix), language=language)
    assert clean_why(completion, ctx) == (completion, None)


def test_a_stuttering_answer_is_nothing_to_show_and_says_why() -> None:
    ctx = at("total = ┃\n")
    assert clean_why("count + count + count + count", ctx) == ("", "looping_line")
