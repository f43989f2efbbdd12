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
