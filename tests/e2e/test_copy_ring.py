"""mlxd/didCopy (issue #16 item 5, llama.vim's ring): code the user copied joins the neighbour
snippets of inline prompts, from far above in the same document or from a document since
closed, where the open documents' windows do not reach. Real daemon over stdio, a loopback
OpenAI-compatible provider (whose request bodies show the prompt), the tiny model behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcMethodNotFound

from tests.conftest import Session, daemon
from tests.e2e.test_attack_one_trim import ENV, ENV_TEXT, ENV_URI, KEY, cloud_config, counts
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.timeout(120)

# A helper far above the cursor (past a 512-token budget), whose words the cursor's lines use.
HELPER = (
    "def normalize_header_value(raw_header, default_charset):\n"
    "    decoded_header = raw_header.decode(default_charset).strip()\n"
    "    return decoded_header.lower()\n"
)
FILLER = "".join(f"value_{n:04d} = compute({n}, {n + 1})\n" for n in range(800))
NEAR = (
    "def normalize_cookie_value(raw_cookie, default_charset):\n"
    "    decoded_cookie = raw_cookie.decode(default_charset)\n"
    "    "
)
DOC = HELPER + "\n" + FILLER + "\n" + NEAR
LINE = DOC.count("\n")  # the cursor's line, after "    "
SNIPPET = "Compare this snippet from"
URI = "file:///work/project/app.py"


def copy(s: Session, text: str, uri: str = URI) -> None:
    s.client.protocol.notify("mlxd/didCopy", {"textDocument": {"uri": uri}, "text": text})


def header_of(fake: FakeProvider, n: int = -1) -> str:
    """The Context part (snippets, path) of the provider's n-th inline request."""
    user = fake.requests[n].body["messages"][-1]["content"]
    return user.split("\n\n```", 1)[0] if user.startswith("Context:\n") else ""


def config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    return cloud_config(
        tmp_path, tiny_model, url, "context_tokens = 512\nneighbor_snippets = true\n"
    )


@asynccontextmanager
async def session(tmp_path: Path, tiny_model: Path) -> AsyncIterator[tuple[Session, FakeProvider]]:
    """The daemon with inline on the fake provider first, which answers " 1" to everything."""
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        async with daemon(config(tmp_path, tiny_model, fake.openai_url), env=ENV) as s:
            yield s, fake


async def test_the_method_is_advertised(tmp_path: Path, tiny_model: Path) -> None:
    async with session(tmp_path, tiny_model) as (s, _):
        assert s.init_result is not None
        assert "mlxd/didCopy" in s.init_result.capabilities.experimental["mlxd"]["methods"]


async def test_a_copy_from_far_above_in_the_document_is_in_the_prompt(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with session(tmp_path, tiny_model) as (s, fake):
        open_doc(s, DOC, uri=URI)
        # Before the copy (a line above: the cursor's own answer would be cached), the
        # helper is out of the window's reach.
        await inline(s, LINE - 1, 0, kind=2, uri=URI)
        copy(s, HELPER)
        await inline(s, LINE, 4, kind=2, uri=URI)
        assert (await counts(s))["copies"] == 1
    assert fake.request_count == 2
    before, after = header_of(fake, 0), header_of(fake, 1)
    assert "normalize_header_value" not in before
    assert SNIPPET in after and "decoded_header = raw_header.decode" in after
    assert "app.py" in after.split(SNIPPET, 1)[1].split("\n", 1)[0]  # named after its source


async def test_a_copy_outlives_the_document_it_came_from(tmp_path: Path, tiny_model: Path) -> None:
    other = "file:///work/project/headers.py"
    async with session(tmp_path, tiny_model) as (s, fake):
        open_doc(s, HELPER, uri=other)
        copy(s, HELPER, uri=other)
        s.client.text_document_did_close(
            T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(other))
        )
        open_doc(s, NEAR, uri=URI)
        await inline(s, 2, 4, kind=2, uri=URI)
    assert "decoded_header = raw_header.decode" in header_of(fake)
    assert "headers.py" in header_of(fake)


async def test_a_copy_the_window_holds_is_not_sent_twice(tmp_path: Path, tiny_model: Path) -> None:
    async with session(tmp_path, tiny_model) as (s, fake):
        doc = HELPER + "\nvalue = "  # within the 256 characters before the cursor every prompt has
        open_doc(s, doc, uri=URI)
        copy(s, HELPER)
        await inline(s, doc.count("\n"), len("value = "), kind=2, uri=URI)
        assert (await counts(s))["copies"] == 1
    body = fake.requests[-1].body["messages"][-1]["content"]
    assert body.count("decoded_header = raw_header.decode") == 1  # the document's own line
    assert SNIPPET not in header_of(fake)


async def test_a_copy_from_an_excluded_document_never_leaves(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with session(tmp_path, tiny_model) as (s, fake):
        open_doc(s, ENV_TEXT, uri=ENV_URI, language="python")  # same language: a candidate
        copy(s, ENV_TEXT + "API_TOKEN_FOR = API_TOKEN\n", uri=ENV_URI)
        open_doc(s, "API_TOKEN = load()\nDB_PASSWORD = load()\nx = ", uri=URI)
        await inline(s, 2, 4, kind=2, uri=URI)
        assert (await counts(s))["copies"] == 0
    assert fake.request_count == 1  # the request went to the provider: the check can fail
    bodies = json.dumps([r.body for r in fake.requests])
    assert "sk-live-5f2c9a8e7d6b" not in bodies and "hunter2" not in bodies


async def test_bad_copies_are_dropped_and_the_daemon_serves_on(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with session(tmp_path, tiny_model) as (s, fake):
        notify = s.client.protocol.notify
        notify("mlxd/didCopy", {"textDocument": {"uri": URI}})  # no text
        notify("mlxd/didCopy", {"textDocument": {"uri": URI}, "text": 7})
        notify("mlxd/didCopy", {"text": HELPER})
        copy(s, HELPER, uri="file:///work/project/never-opened.py")
        copy(s, "x = 1")  # too short to tell the model anything (and URI is not open)
        with pytest.raises(JsonRpcMethodNotFound):
            await s.client.protocol.send_request_async(
                "mlxd/didCopy", {"textDocument": {"uri": URI}, "text": HELPER}
            )
        open_doc(s, NEAR, uri=URI)
        copy(s, "x = 1")  # open now, but a word or two is not kept
        got = await inline(s, 2, 4, kind=2, uri=URI)
        assert got is not None
        assert (await counts(s))["copies"] == 0
    assert SNIPPET not in header_of(fake)


async def test_a_copy_longer_than_the_snippet_budget_shows_its_first_lines(
    tmp_path: Path, tiny_model: Path
) -> None:
    # context_tokens 512: snippets get 256 characters; the copy is ~1,500.
    body = "".join(
        f"    decoded_header_{n} = raw_header.decode(default_charset)\n" for n in range(24)
    )
    long_copy = HELPER.split("\n")[0] + "\n" + body
    async with session(tmp_path, tiny_model) as (s, fake):
        open_doc(s, DOC, uri=URI)
        copy(s, long_copy)
        await inline(s, LINE, 4, kind=2, uri=URI)
    header = header_of(fake)
    assert "normalize_header_value" in header and "decoded_header_0 =" in header
    assert "decoded_header_23" not in header  # cut at a line end within the budget
