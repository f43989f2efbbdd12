"""The content rule (taint.quotes) holds for inline requests too: a line of an open excluded
document in what a cloud provider would be sent (messages.sized: the header with its neighbour
snippets, the prefix and the suffix, after the one trim) routes the request as if it named that
document, so it stays on the local model. Text beyond the budget is not sent and does not count.
Counted at the loopback provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import _plain, cloud_first_config, daemon
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-inline-quote-0123456789"
LINE = "API_TOKEN=sk-live-1234567890abcdef"
ENV_URI = "file:///p/.env"
ENV = f"# service credentials\n{LINE}\nDB_HOST=localhost\n"

pytestmark = pytest.mark.timeout(90)


def config(tmp_path: Path, tiny_model: Path, url: str, extra: str = "") -> Path:
    toml = 'exclude = ["*.env"]\n[inline]\nmax_ms = 20000\nneighbor_snippets = true\n'
    toml += "background = false\nwhole_lines = false\nmax_tokens = 4\n" + extra
    path = tmp_path / "quote.toml"
    return cloud_first_config(path, tiny_model, url, "QUOTE_KEY", ("inline",), toml)


def open_doc(s, uri: str, text: str, language: str = "python") -> None:
    s.client.text_document_did_open(
        T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, language, 1, text))
    )


def close_doc(s, uri: str) -> None:
    s.client.text_document_did_close(T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri)))


async def inline(s, uri: str, line: int, character: int) -> T.InlineCompletionList:
    result = await s.client.text_document_inline_completion_async(
        T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier(uri),
            position=T.Position(line, character),
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert isinstance(result, T.InlineCompletionList)
    return result


async def local_generations(s) -> int:
    stats = _plain(await s.request("mlxd/stats", {}))
    return sum(m["generations"] for m in stats["local"].values())


def body(fake: FakeProvider, i: int = 0) -> str:
    return json.dumps(fake.requests[i].body, ensure_ascii=False)


# The line right above the cursor in the document being edited.
APP = f"import os\n{LINE}\ntoken = "


async def test_a_quote_above_the_cursor_keeps_inline_on_the_local_model(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" os.environ"])
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"QUOTE_KEY": KEY}
        ) as s:
            open_doc(s, ENV_URI, ENV, "dotenv")
            open_doc(s, "file:///p/app.py", APP)
            before = await local_generations(s)
            await inline(s, "file:///p/app.py", 2, len("token = "))
            after = await local_generations(s)
    assert fake.request_count == 0 and fake.bytes_received == 0
    assert after > before  # served, by the local fallback


async def test_with_no_local_backend_a_quoting_inline_request_gets_no_answer(
    tmp_path: Path, tiny_model: Path
) -> None:
    # The rule refuses the cloud exactly as for an excluded document: with only a cloud backend
    # in the inline chain, nothing is left to try and the editor shows nothing.
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" os.environ"])
        cfg = config(tmp_path, tiny_model, fake.openai_url)
        cfg.write_text(cfg.read_text().replace('inline = ["cloud", "local"]', 'inline = ["cloud"]'))
        async with daemon(cfg, env={"QUOTE_KEY": KEY}) as s:
            open_doc(s, ENV_URI, ENV, "dotenv")
            open_doc(s, "file:///p/app.py", APP)
            result = await inline(s, "file:///p/app.py", 2, len("token = "))
    assert fake.request_count == 0 and fake.bytes_received == 0
    assert not result.items


# A neighbour (not excluded) that holds the line, sharing the cursor's identifiers, so a snippet
# of it goes in the header.
UTIL = f"def load_api_token():\n    # {LINE}\n    return read_api_token('API_TOKEN')\n"
MAIN = "from util import load_api_token\n\napi_token = load_api_token("


async def test_a_quote_in_a_neighbour_snippet_keeps_inline_local(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([")"])
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"QUOTE_KEY": KEY}
        ) as s:
            open_doc(s, ENV_URI, ENV, "dotenv")
            open_doc(s, "file:///p/util.py", UTIL)
            for uri in ("file:///p/main.py", "file:///p/main2.py"):
                open_doc(s, uri, MAIN)
            await inline(s, "file:///p/main.py", 2, len("api_token = load_api_token("))
            assert fake.request_count == 0 and fake.bytes_received == 0
            # Control: with the .env closed the same context goes to the cloud, and the line is
            # in its header: the snippet did carry the quote, so the check above was not idle.
            close_doc(s, ENV_URI)
            await inline(s, "file:///p/main2.py", 2, len("api_token = load_api_token("))
    assert fake.request_count == 1
    assert LINE in body(fake) and "load_api_token" in body(fake)


async def test_a_quote_beyond_the_cloud_budget_does_not_keep_inline_local(
    tmp_path: Path, tiny_model: Path
) -> None:
    # The line is 400 lines above the cursor, far past inline.context_tokens: the provider is not
    # sent it, so it does not make the request local (the check reads what is sent, not more).
    filler = "".join(f"value_{n:04d} = compute({n}, {n + 1})\n" for n in range(400))
    app = f"{LINE}\n{filler}total = "
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = config(tmp_path, tiny_model, fake.openai_url, "context_tokens = 128\n")
        async with daemon(cfg, env={"QUOTE_KEY": KEY}) as s:
            open_doc(s, ENV_URI, ENV, "dotenv")
            open_doc(s, "file:///p/app.py", app)
            await inline(s, "file:///p/app.py", 401, len("total = "))
    assert fake.request_count == 1
    assert "value_0399 = compute(399, 400)" in body(fake)  # the text near the cursor went
    assert LINE not in body(fake)  # and the quote, beyond the budget, did not


async def test_once_the_excluded_document_is_closed_the_quote_goes_to_the_cloud(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" os.environ"])
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"QUOTE_KEY": KEY}
        ) as s:
            open_doc(s, ENV_URI, ENV, "dotenv")
            close_doc(s, ENV_URI)
            open_doc(s, "file:///p/app.py", APP)
            await inline(s, "file:///p/app.py", 2, len("token = "))
    assert fake.request_count == 1
    assert LINE in body(fake)
