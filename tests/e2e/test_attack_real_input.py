"""Issue 14, an independent attack: inputs of the issue's kinds the fix may not have thought of,
on the real daemon over real stdio (fake cloud servers on loopback, the tiny real MLX model).

Passing tests are inputs that did not break anything; `xfail(strict=True)` ones are faults
found, each with its diagnosis in the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T

from ..conftest import chat_params, daemon
from ..fakes.providers import FakeProvider, Reply
from ..test_inline_e2e import inline, open_doc
from ..test_router import ENV, KEY
from .test_real_input import _change, _close, ask, cloud_only

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fake() -> Any:
    async with FakeProvider(require_key=KEY) as f:
        yield f


# --- kind 1: document addresses ----------------------------------------------------------------
async def _seen(s: Any, fake: FakeProvider, uri: str, line: int, character: int) -> str:
    before = fake.request_count
    await inline(s, line, character, kind=1, uri=uri)
    assert fake.request_count == before + 1
    body = fake.requests[-1].body
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


async def test_uri_spellings_pygls_also_decodes_are_one_document(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """%20 vs space, %3a vs %3A vs ':' in a change, and '+' is not a space."""
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        open_doc(s, "a = 1\nb = 2\n", uri="file:///w/My%20Project/app.py")
        _change(s, "file:///w/My Project/app.py", 2, (1, 0, 1, 0), "X")
        seen = await _seen(s, fake, "file:///w/My%20Project/app.py", 1, 1)
        assert "a = 1\nX<CURSOR>b = 2" in seen, repr(seen)
        open_doc(s, "c = 1\n", uri="file:///c%3a/w/x.py")
        _change(s, "file:///c%3A/w/x.py", 2, (0, 0, 0, 0), "Y")
        _change(s, "file:///c:/w/x.py", 3, (0, 0, 0, 0), "Z")
        seen = await _seen(s, fake, "file:///c%3A/w/x.py", 0, 2)
        assert "ZY<CURSOR>c = 1" in seen, repr(seen)
        open_doc(s, "PLUS = 1\n", uri="file:///w/a+b.py")
        open_doc(s, "SPACE = 1\n", uri="file:///w/a%20b.py")
        assert "PLUS" in await _seen(s, fake, "file:///w/a+b.py", 0, 0)
        assert "SPACE" in await _seen(s, fake, "file:///w/a b.py", 0, 0)


@pytest.mark.xfail(
    strict=True,
    reason="attack: didChange under another spelling of the drive (C: vs c%3A) is lost: "
    "pygls keys documents by unquote(uri), not uris.key",
)
async def test_a_change_under_another_drive_spelling_reaches_the_document(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        open_doc(s, "a = 1\nb = 2\n", uri="file:///C:/work/app.py")
        _change(s, "file:///c%3A/work/app.py", 2, (1, 0, 1, 0), "X")  # VS Code's spelling
        seen = await _seen(s, fake, "file:///c%3A/work/app.py", 1, 1)
        assert "a = 1\nX<CURSOR>b = 2" in seen, repr(seen)


@pytest.mark.xfail(
    strict=True,
    reason="attack: didClose under another drive spelling leaves the document open in the "
    "pygls workspace; inline keeps serving the closed text",
)
async def test_a_close_under_another_drive_spelling_closes_the_document(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        open_doc(s, "a = 1\n", uri="file:///C:/work/app.py")
        _close(s, "file:///c%3A/work/app.py")
        try:
            result = await inline(s, 0, 0, uri="file:///C:/work/app.py")
        except Exception as exc:
            assert "not open" in str(exc)
        else:
            assert not result.items
        assert fake.request_count == 0  # the closed text was not sent anywhere


@pytest.mark.xfail(
    strict=True,
    reason="attack: two files whose names are not UTF-8 (%E9 vs %FF) become one document: "
    "unquote() turns both into U+FFFD (pygls' keys and uris.key alike)",
)
async def test_two_undecodable_file_names_are_two_documents(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        open_doc(s, "LATIN1 = 1\n", uri="file:///w/caf%E9.py")
        open_doc(s, "OTHER = 1\n", uri="file:///w/caf%FF.py")
        seen = await _seen(s, fake, "file:///w/caf%E9.py", 0, 0)
        assert "LATIN1" in seen and "OTHER" not in seen, repr(seen)


@pytest.mark.xfail(
    strict=True,
    reason="attack: file://localhost/x is file:///x (RFC 8089) but uris.key keeps the "
    "authority, so inline answers 'not open'",
)
async def test_file_localhost_is_the_same_document(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        open_doc(s, "a = 1\n", uri="file:///w/app.py")
        seen = await _seen(s, fake, "file://localhost/w/app.py", 0, 0)
        assert "a = 1" in seen


# --- kind 2: positions and lines ---------------------------------------------------------------
async def test_line_breaks_built_and_broken_by_incremental_edits(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """A \\r\\n completed by a later edit, a \\r\\n broken into \\r, an empty document."""
    fake.default = Reply.text(["pass"])
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        uri = "file:///work/project/app.py"
        open_doc(s, "a\r", uri=uri)
        _change(s, uri, 2, (1, 0, 1, 0), "\n")  # "a\r\n": still two lines
        _change(s, uri, 3, (1, 0, 1, 0), "X")
        assert "a\r\nX<CURSOR>" in await _seen(s, fake, uri, 1, 1)
        _change(s, uri, 4, (0, 1, 1, 0), "\r")  # the terminator replaced: "a\rX"
        _change(s, uri, 5, (1, 1, 1, 1), "\u2028Y")
        _change(s, uri, 6, (1, 3, 1, 3), "Z")  # after the U+2028, same line
        assert "a\rX\u2028YZ<CURSOR>" in await _seen(s, fake, uri, 1, 4)
        empty = "file:///work/project/empty.py"
        open_doc(s, "", uri=empty)
        result = await inline(s, 0, 0, uri=empty)
        assert isinstance(result, T.InlineCompletionList)
        _change(s, empty, 2, (0, 0, 0, 0), "\U0001f600")  # an emoji, utf-16 by default
        _change(s, empty, 3, (0, 2, 0, 2), "!")
        assert "\U0001f600!<CURSOR>" in await _seen(s, fake, empty, 0, 3)


# --- kind 3: stop strings ----------------------------------------------------------------------
PIECES = ["Hel", "lo E", "N", "D wor", "ld caf", "\u00e9 .* done"]
STOPS = [
    (["lo E", "o EN"], "Hel"),  # overlapping: the earliest match wins
    (["END", "EN"], "Hello "),  # one a prefix of the other
    (["lo END"], "Hel"),  # spans three chunks
    ([" "], "Hello"),  # whitespace
    ([".*"], "Hello END world caf\u00e9 "),  # regex characters are literal
    (["\u00e9"], "Hello END world caf"),  # multi-byte
    (["never", "world"], "Hello END "),
]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_stop_strings_of_every_shape(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, protocol: str
) -> None:
    async with daemon(cloud_only(tmp_path, tiny_model, fake, protocol), env=ENV) as s:
        for stops, expected in STOPS:
            fake.enqueue(Reply.text(PIECES))
            r = await ask(s, "mlxd/chat", "t" + stops[0], stop=stops)
            assert r.text == expected, stops
            assert "".join(s.deltas("t" + stops[0])) == expected


async def test_an_empty_stop_string_is_refused_or_ignored(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        fake.enqueue(Reply.text(PIECES))
        try:
            r = await ask(s, "mlxd/chat", "t", stop=[""])
        except Exception as exc:  # refused: a clear invalid-params error naming stop
            assert "stop" in str(exc)
        else:
            assert r.text == "".join(PIECES)


# --- kind 4: reasoning and fences in complete ------------------------------------------------
COMPLETE_CASES = [
    (["````python\nreturn a + b\n````"], "return a + b"),
    (["``", "`", "\nreturn a + b\n", "``", "`"], "return a + b"),  # no language tag, split
    (["```python"], ""),  # a language tag only
    (["<think>\nno close, ever"], ""),
    (["  <think>x</think>\n\n  return a + b"], "  return a + b"),  # indent kept
]


async def test_complete_reasoning_and_fence_variants(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        for i, (pieces, expected) in enumerate(COMPLETE_CASES):
            fake.enqueue(Reply.text(pieces))
            r = await ask(s, "mlxd/complete", f"c{i}")
            assert r.text == expected, pieces


@pytest.mark.xfail(
    strict=True,
    reason="attack: a ~~~ fence (CommonMark's other fence) is not stripped from complete: "
    "answer.py _Fences only knows ```",
)
async def test_a_tilde_fence_is_stripped_from_complete(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        fake.enqueue(Reply.text(["~~~python\nreturn a + b\n~~~"]))
        r = await ask(s, "mlxd/complete", "c")
        assert r.text == "return a + b"


@pytest.mark.xfail(
    strict=True,
    reason="attack: in a non-markdown file a ``` line in the middle of a completion that "
    "opened no fence (a docstring example) cuts the answer there",
)
async def test_a_fence_line_inside_an_unfenced_python_completion_is_content(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    body = '"""Add.\n\n    ```python\n    add(1, 2)\n    ```\n    """\n    return a + b'
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        fake.enqueue(Reply.text([body]))
        r = await ask(s, "mlxd/complete", "c")
        assert r.text == body


@pytest.mark.xfail(
    strict=True,
    reason="attack: a reasoning model whose template opens <think> in the prompt "
    "(DeepSeek-R1, Qwen3) streams only '</think>'; complete returns the reasoning",
)
async def test_a_close_tag_only_ends_reasoning_in_complete(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
        fake.enqueue(Reply.text(["I should add", " them.</th", "ink>\n\nreturn a + b"]))
        r = await ask(s, "mlxd/complete", "c")
        assert r.text == "return a + b"


# --- kind 5: stream endings --------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_finish_length_is_reported(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider, protocol: str
) -> None:
    fake.enqueue(Reply.text(["Hel", "lo"], finish="length"))
    async with daemon(cloud_only(tmp_path, tiny_model, fake, protocol), env=ENV) as s:
        r = await ask(s, "mlxd/chat", "t")
        assert r.text == "Hello" and r.finishReason == "length"


# --- kind 3/4 on the local model: no U+FFFD at any cut -----------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tiny_model: Path) -> Any:
    import mlx_lm

    return mlx_lm.load(str(tiny_model))


async def test_local_cuts_at_every_token_count_leave_no_replacement_character(
    tiny_config: Path, tiny_lm: Any
) -> None:
    """The tiny model really generates invalid UTF-8 (a lone byte token mid-answer: that U+FFFD
    is the decoded tokens); what a cut may not leave is a U+FFFD at the end."""
    from .test_real_input import chat_req, greedy_text

    async with daemon(tiny_config) as s:
        for question in ("caf\u00e9 \U0001f600", "\u65e5\u672c\u8a9e"):
            for n in range(1, 6):
                token = f"{question}-{n}"
                r = await s.request("mlxd/chat", chat_params(question, token=token, maxTokens=n))
                expected = greedy_text(tiny_lm, chat_req(question), n).rstrip("\ufffd")
                assert r.text == expected and not r.text.endswith("\ufffd"), (question, n)
                assert "".join(s.deltas(token)) == r.text
