"""textDocument/inlineCompletion over real stdio with the tiny model: the LSP 3.18 surface."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import Session, daemon, write_config

URI = "file:///work/project/app.py"


def open_doc(s: Session, text: str, uri: str = URI, language: str = "python") -> None:
    s.client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )


async def inline(
    s: Session, line: int, character: int, kind: int = 1, uri: str = URI
) -> T.InlineCompletionList:
    result = await s.client.text_document_inline_completion_async(
        T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier(uri),
            position=T.Position(line, character),
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind(kind)),
        )
    )
    assert isinstance(result, T.InlineCompletionList)
    return result


@pytest.fixture
def inline_config(tmp_path: Path, tiny_model: Path) -> Path:
    # max_ms generous: the shared CI cores must not turn the time cap into an empty answer
    return write_config(
        tmp_path / "inline.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 16\nmax_ms = 20000\n'
        "whole_lines = false\n"  # the random model never ends a line: show the cut text
        # The counts here are the requests' own: no work ahead (tests/e2e/test_work_ahead.py).
        "background = false\n",
    )


@pytest.mark.parametrize("kind", [1, 2])
async def test_invoked_and_automatic_triggers_return_an_item_at_the_cursor(
    inline_config: Path, kind: int
) -> None:
    async with daemon(inline_config) as s:
        open_doc(s, "def add(a, b):\n    return ")
        result = await inline(s, 1, 11, kind)
        # Automatic: one item. Invoked: the greedy one and up to two distinct sampled ones.
        assert 1 <= len(result.items) <= (3 if kind == 1 else 1)
        texts = [item.insert_text for item in result.items]
        assert len(set(texts)) == len(texts)
        for item in result.items:
            assert isinstance(item.insert_text, str) and item.insert_text.strip()
            assert item.range == T.Range(T.Position(1, 11), T.Position(1, 11))


async def test_a_line_cut_by_the_token_cap_is_never_shown(tmp_path: Path, tiny_model: Path) -> None:
    # The random model never ends a line: with whole_lines (the default) each answer is cut
    # by max_tokens mid-line, so nothing may be shown.
    config = write_config(
        tmp_path / "whole.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 4\nmax_ms = 20000\n',
    )
    async with daemon(config) as s:
        open_doc(s, "def add(a, b):\n    return ")
        for kind in (1, 2):
            assert not (await inline(s, 1, 11, kind)).items


async def test_utf16_positions_after_non_ascii_text(inline_config: Path) -> None:
    async with daemon(inline_config) as s:
        line = 's = "😀 naïve 日本" + '  # the emoji is 2 UTF-16 units
        open_doc(s, line)
        utf16_end = len(line.encode("utf-16-le")) // 2
        result = await inline(s, 0, utf16_end)
        assert result.items and result.items[0].range.start.character == utf16_end


async def test_incremental_edits_then_typing_through_needs_no_model_call(
    inline_config: Path,
) -> None:
    async with daemon(inline_config) as s:
        open_doc(s, "def f(x):\n    ")
        s.client.text_document_did_change(
            T.DidChangeTextDocumentParams(
                text_document=T.VersionedTextDocumentIdentifier(uri=URI, version=2),
                content_changes=[
                    T.TextDocumentContentChangePartial(
                        range=T.Range(T.Position(1, 4), T.Position(1, 4)), text="return "
                    )
                ],
            )
        )
        first = await inline(s, 1, 11)
        assert first.items
        suggestion = first.items[0].insert_text
        before = await s.request("mlxd/stats", {})
        # type the suggestion's first character: answered from the cache, no generation
        typed = suggestion[0]
        s.client.text_document_did_change(
            T.DidChangeTextDocumentParams(
                text_document=T.VersionedTextDocumentIdentifier(uri=URI, version=3),
                content_changes=[
                    T.TextDocumentContentChangePartial(
                        range=T.Range(T.Position(1, 11), T.Position(1, 11)), text=typed
                    )
                ],
            )
        )
        # Automatic, as editors ask while typing (Invoked would sample alternatives: a model call)
        second = await inline(s, 1, 11 + len(typed.encode("utf-16-le")) // 2, kind=2)
        after = await s.request("mlxd/stats", {})
        if len(suggestion) > 1:
            assert second.items[0].insert_text == suggestion[1:]
        assert after.inline.generations == before.inline.generations
        assert after.inline.cacheHits == before.inline.cacheHits + 1


async def test_a_newer_request_supersedes_the_older_one(
    tmp_path: Path, slow_tiny_model: Path
) -> None:
    cfg = write_config(
        tmp_path / "slow.toml",
        f'[local]\nmodel = "{slow_tiny_model}"\n[inline]\nmax_tokens = 400\nmax_ms = 60000\n',
    )
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, "x = 1\ny = ")
        older = asyncio.ensure_future(inline(s, 1, 4))
        await asyncio.sleep(0.3)
        newer = await inline(s, 1, 4)
        old = await older
        assert len(old.items) == 0  # superseded: generation stopped, nothing shown
        assert isinstance(newer, T.InlineCompletionList)
        stats = await s.request("mlxd/stats", {})
        assert stats.inline.cancelled >= 1


async def test_unopened_document_is_a_clear_error(inline_config: Path) -> None:
    async with daemon(inline_config) as s:
        with pytest.raises(JsonRpcException) as err:
            await inline(s, 0, 0, uri="file:///never/opened.py")
        assert err.value.code == -32602 and "didOpen" in err.value.message


async def test_disabled_language_gets_no_items_and_no_generation(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = write_config(
        tmp_path / "off.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline.languages.markdown]\nenabled = false\n',
    )
    async with daemon(cfg) as s:
        open_doc(s, "# Title\n", uri="file:///p/README.md", language="markdown")
        result = await inline(s, 1, 0, uri="file:///p/README.md")
        assert len(result.items) == 0
        stats = await s.request("mlxd/stats", {})
        assert stats.inline.generations == 0
