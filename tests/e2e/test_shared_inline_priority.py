"""Issue #19: window A's inline request goes before window B's streaming chat in the shared
daemon (models/ranks.py). B's chat pauses while A's inline request runs and then finishes with
the text it gets unpaused (greedy); `mlxd/stats` counts the pause. The same within one window.
Real forwarders, one real daemon in a runtime directory of the test's own, the slow tiny model.
The asserts are on counters and texts, never on how long something took."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import _plain, chat_params, daemon
from tests.e2e.test_privacy import open_doc
from tests.e2e.test_shared_daemon import rt, shared, stats  # noqa: F401 (rt: the fixture)
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.slow

KEY = "sk-prio-window-0123456789"

CHAT_TOKENS = 300  # long enough to be streaming still when the inline request is admitted


def config(tmp_path: Path, model: Path) -> Path:
    """No prompt cache (each chat computes its prompt afresh, so the two runs' greedy texts
    compare exactly), no work ahead, an inline bound no run reaches."""
    path = tmp_path / "prio.toml"
    path.write_text(
        f'[local]\nmodel = "{model}"\npreload = true\nprompt_cache_mb = 0\n'
        "[inline]\nwhole_lines = false\nbackground = false\nmax_ms = 120000\nmax_tokens = 8\n"
    )
    return path


def inline_params(uri: str, line: int, col: int) -> T.InlineCompletionParams:
    return T.InlineCompletionParams(
        text_document=T.TextDocumentIdentifier(uri),
        position=T.Position(line, col),
        context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
    )


async def until_streaming(window, token: str) -> None:
    for _ in range(1200):
        if window.deltas(token):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the chat never streamed")


@pytest.mark.parametrize("same_window", [False, True], ids=["two-windows", "one-window"])
async def test_an_inline_request_pauses_a_streaming_chat_which_loses_nothing(
    rt,  # noqa: F811
    tmp_path,
    slow_tiny_model,
    same_window,
):
    cfg = config(tmp_path, slow_tiny_model)
    async with daemon(cfg, env=shared(rt)) as a, daemon(cfg, env=shared(rt)) as b:
        chatter = a if same_window else b
        ask = chat_params("count to a hundred", maxTokens=CHAT_TOKENS)
        alone = _plain(await chatter.request("mlxd/chat", ask))  # unpaused: the reference
        assert alone["usage"]["completionTokens"] == CHAT_TOKENS
        spec = next(iter((await stats(a))["local"]))
        assert (await stats(a))["local"][spec]["pausedStreams"] == 0

        open_doc(a, "file:///p/main.py", "def add(a, b):\n    return a + b\n\nprint(add(1, ")
        _, chat = chatter.start("mlxd/chat", {**ask, "partialResultToken": "chat"})
        await until_streaming(chatter, "chat")
        got = await a.client.text_document_inline_completion_async(
            inline_params("file:///p/main.py", 3, 13)
        )
        assert isinstance(got, T.InlineCompletionList)
        assert not chat.done()  # the chat still streams: it waited, it was not served first
        paused = _plain(await asyncio.wait_for(chat, 120))
        # Paused once per wave of inline generations (a request may make more than one).
        assert (await stats(a))["local"][spec]["pausedStreams"] >= 1
        assert paused["text"] == alone["text"]  # greedy: the paused chat lost nothing
        assert paused["backend"] == "local" and paused["attempts"] == []


async def test_a_chat_paused_before_its_first_token_does_not_fall_back_to_the_cloud(
    rt,  # noqa: F811
    tmp_path,
    one_line_model,
):
    """Chain local, then cloud, with a first-token limit shorter than the pause: the pause (told
    to the router) is not counted, the chat stays local and the cloud gets no byte. The pause
    lasts until INLINE_RANK_S (3 s) after the inline request began; the limit (1.5 s) leaves
    the chat's own first token, decoded alongside the inline request once the pause is over,
    time on a loaded machine (CI, 0.5 s: the chat fell back after its pause)."""
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["from the cloud"])
        cfg = tmp_path / "fallback.toml"
        cfg.write_text(
            # No speculation: a repetitive random text would make the inline answer quick, and
            # the chat must arrive while it still decodes.
            f'[local]\nmodel = "{one_line_model}"\npreload = true\nprompt_cache_mb = 0\n'
            'speculative = "off"\n'
            f'[backends.cloud]\nprotocol = "openai"\nbase_url = "{fake.openai_url}"\n'
            f'api_key_env = "PRIO_KEY"\nmodel = "gpt-test"\n'
            '[routing]\ncloud = true\nchat = ["local", "cloud"]\ninline = ["local"]\n'
            "[timeouts]\nfirst_token_s = 1.5\n"
            "[inline]\nwhole_lines = false\nbackground = false\nmax_ms = 120000\n"
            'max_tokens = 600\nmulti_line = "never"\n'
        )
        async with daemon(cfg, env=shared(rt, {"PRIO_KEY": KEY})) as a:
            await a.wait_status("ready", timeout=120)
            open_doc(a, "file:///p/main.py", "def add(a, b):\n    return a + b\n\nx = add(1, ")
            spec = next(iter((await stats(a))["local"]))
            inline = asyncio.ensure_future(
                a.client.text_document_inline_completion_async(
                    inline_params("file:///p/main.py", 3, 11)
                )
            )
            # Its outcome retrieved whatever happens: an error never retrieved is logged when
            # the task is collected, and that log's traceback parses source (3.11's traceback
            # carets) inside whatever the collection interrupted.
            inline.add_done_callback(lambda f: f.cancelled() or f.exception())
            for _ in range(1200):  # until the inline request decodes
                if (await stats(a))["local"][spec]["active"]:
                    break
                await asyncio.sleep(0.05)
            chat = _plain(await a.request("mlxd/chat", chat_params("hi", maxTokens=4)))
            assert (chat["backend"], chat["attempts"]) == ("local", [])
            assert fake.request_count == 0 and fake.bytes_received == 0
            assert (await stats(a))["local"][spec]["pausedStreams"] >= 1
            assert isinstance(await asyncio.wait_for(inline, 120), T.InlineCompletionList)
