"""The answer filter on crafted streams, cut at every possible chunk boundary."""

from __future__ import annotations

import pytest

from mlxd.models import AnswerFilter


def run(kind: str, chunks: list[str], stop: tuple[str, ...] = (), lang: str = "python"):
    f = AnswerFilter(kind, list(stop), lang)
    text = reasoning = ""
    for c in chunks:
        p = f.feed(c)
        text, reasoning = text + p.text, reasoning + p.reasoning
        if f.stopped:
            break
    p = f.flush()
    return text + p.text, reasoning + p.reasoning


def splits(s: str) -> list[list[str]]:
    """Whole, char by char, and every cut in two."""
    return [[s], list(s)] + [[s[:i], s[i:]] for i in range(1, len(s))]


CASES = [
    # kind, raw, stop, expected text, expected reasoning
    ("chat", "Hello END world", ("END",), "Hello ", ""),
    ("complete", "Hello END world", ("END", "never"), "Hello ", ""),
    ("chat", "<think>a\nb</think>\n\nHi", (), "Hi", "a\nb"),
    ("chat", "  <think>x</think>Hi <think>y</think>", (), "Hi <think>y</think>", "x"),
    ("chat", "<thinking is fun", (), "<thinking is fun", ""),
    ("chat", "```python\nx\n```", (), "```python\nx\n```", ""),
    ("complete", "<think>x</think>\n```python\nreturn 1\n```\nmore", (), "return 1", ""),
    ("inline", "```\n  a\n  b\n```", (), "  a\n  b", ""),
    ("inline", "a + b\n```", (), "a + b", ""),
    ("inline", "x = `a`\n``b``\n", (), "x = `a`\n``b``\n", ""),
    ("inline", "```js\n", (), "", ""),
    ("inline", "x = a```b\n```", (), "x = a```b", ""),
    ("complete", "s = `\n`", (), "s = `\n`", ""),
    ("inline", " b", (), " b", ""),
    ("complete", "<think>never closed", (), "", ""),
    ("chat", "<think>never closed", (), "", "never closed"),
]


@pytest.mark.parametrize(("kind", "raw", "stop", "text", "reasoning"), CASES)
def test_every_chunking_gives_the_same_answer(kind, raw, stop, text, reasoning) -> None:
    for chunks in splits(raw):
        assert run(kind, chunks, stop) == (text, reasoning), chunks


def test_a_closing_fence_is_content_in_markdown_unless_the_answer_opened_one() -> None:
    assert run("inline", ["text\n```\nmore"], lang="markdown") == ("text\n```\nmore", "")
    assert run("inline", ["```md\ntext\n```\nmore"], lang="markdown") == ("text", "")


def test_reasoning_deltas_go_apart_in_chat_and_nowhere_in_completions() -> None:
    f = AnswerFilter("chat", [])
    assert f.feed("hm", reasoning=True).reasoning == "hm"
    g = AnswerFilter("inline", [])
    assert g.feed("hm", reasoning=True).reasoning == "" and g.feed("x").text == "x"


def test_a_new_attempt_may_open_with_its_own_reasoning() -> None:
    f = AnswerFilter("chat", [])
    assert f.feed("Hello").text == "Hello"
    f.new_attempt()
    p = f.feed("<think>where was I</think> world")
    assert (p.text, p.reasoning) == (" world", "where was I")


def test_lone_surrogates_split_across_deltas_are_joined() -> None:
    f = AnswerFilter("chat", [])
    assert f.feed("a\ud83d").text == "a"
    assert f.feed("\ude00b").text == "\U0001f600b"
    assert f.feed("\ud83d", reasoning=True).reasoning == ""
    assert f.feed("\ude00", reasoning=True).reasoning == "\U0001f600"


DOCSTRING = '"""Add.\n\n    ```python\n    add(1, 2)\n    ```\n    """\nreturn a + b'
FENCE_CASES = [
    # raw, whether the prompt opened a fence, expected text (issue #14 attack, items 4 and 5)
    ("~~~python\nreturn 1\n~~~\nmore", True, "return 1"),  # CommonMark's other fence
    ("~~~\na\n```\nb\n~~~", True, "a\n```\nb"),  # closed by its own character only
    ("````\na\n```\nb\n````x\n````", True, "a\n```\nb\n````x"),  # and as long; no info
    (DOCSTRING, True, DOCSTRING),  # indented 4: not a fence
    ('x = """\n```python\nadd(1)\n```\n"""\ny', True, 'x = """\n```python\nadd(1)\n```\n"""\ny'),
    ("a + b\n~~~\nc", True, "a + b\n~~~\nc"),  # the prompt's fence is ```
    ("a + b\n```\nc", False, "a + b\n```\nc"),  # no fence opened: a ``` line is content
    ("a + b\n```", False, "a + b\n```"),
    ("```\na\n```\nb", False, "a"),  # the answer's own fence closes wherever it streams
]


@pytest.mark.parametrize(("raw", "prompt_fenced", "text"), FENCE_CASES)
def test_only_the_fence_that_was_opened_closes_the_answer(raw, prompt_fenced, text) -> None:
    for chunks in splits(raw):
        f = AnswerFilter("complete", [], "python")
        f.use_prompt(fenced=prompt_fenced)
        out = "".join(f.feed(c).text for c in chunks) + f.flush().text
        assert out == text, chunks


LONE_CLOSE = [
    # kind, raw, expected text (issue #14 attack, item 6: the template opened <think> unseen)
    ("complete", "I should add them.</think>\n\nreturn a + b", "return a + b"),
    ("complete", "hm</think>x", "x"),
    ("inline", "hm</think>x", "hm</think>x"),  # streamed at once: max_lines/max_ms cut on it
    ("complete", "```python\nhm</think>\nreturn 1\n```", "return 1"),  # reasoning, then fence
    ("chat", "I should add them.</think>\n\nHi", "I should add them.</think>\n\nHi"),  # streamed
    ("complete", "return a + b", "return a + b"),
]


@pytest.mark.parametrize(("kind", "raw", "text"), LONE_CLOSE)
def test_a_lone_close_tag_ends_unseen_reasoning_in_completions(kind, raw, text) -> None:
    for chunks in splits(raw):
        assert run(kind, chunks)[0] == text, chunks


def test_a_lone_close_tag_is_looked_for_only_in_a_bounded_head() -> None:
    from mlxd.models.answer import LONE_CLOSE_HOLD

    late = "x" * LONE_CLOSE_HOLD + "</think>y"
    assert run("complete", [late[:LONE_CLOSE_HOLD], late[LONE_CLOSE_HOLD:]])[0] == late
    f = AnswerFilter("complete", [])
    assert f.feed("a" * (LONE_CLOSE_HOLD - 1)).text == ""  # held while a </think> may come
    assert f.feed("b").text == "a" * (LONE_CLOSE_HOLD - 1) + "b"


def test_a_backend_that_saw_its_template_gets_no_lone_close_tag_search() -> None:
    f = AnswerFilter("complete", [])
    f.use_prompt(fenced=False, template_seen=True)  # the local model checks its template
    assert f.feed("a</think>b").text == "a</think>b"


def test_a_server_that_streams_reasoning_apart_gets_no_lone_close_tag_search() -> None:
    f = AnswerFilter("complete", [])
    f.feed("hm", reasoning=True)
    assert f.feed("a</think>b").text == "a</think>b"
