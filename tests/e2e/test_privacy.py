"""Nothing from an excluded document reaches a cloud backend, counted at the loopback server."""

from __future__ import annotations

import json
from pathlib import Path

from lsprotocol import types as T

from tests.conftest import cloud_first_config, daemon
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-privacy-test-0123456789"


def config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    extra = "[inline]\nmax_ms = 20000\nneighbor_snippets = true\n"
    path = tmp_path / "privacy.toml"
    return cloud_first_config(path, tiny_model, url, "PRIVACY_KEY", ("inline",), extra)


def open_doc(s, uri: str, text: str) -> None:
    s.client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )


async def test_excluded_neighbour_never_enters_a_cloud_prompt(
    tmp_path: Path, tiny_model: Path
) -> None:
    vault = "def load_token():\n    return 'VAULT-SECRET-9f3a' + compute_total(1)\n"
    util = "def compute_total(items):\n    return sum(UTIL_MARKER_77 for _ in items)\n"
    main = "from util import compute_total\n\ntotal = compute_total("
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["items)"])
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"PRIVACY_KEY": KEY}
        ) as s:
            open_doc(s, "file:///p/secrets/vault.py", vault)
            open_doc(s, "file:///p/util.py", util)
            open_doc(s, "file:///p/main.py", main)
            result = await s.client.text_document_inline_completion_async(
                T.InlineCompletionParams(
                    text_document=T.TextDocumentIdentifier("file:///p/main.py"),
                    position=T.Position(2, len("total = compute_total(")),
                    context=T.InlineCompletionContext(
                        trigger_kind=T.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
        assert result is not None and result.items and result.items[0].insert_text == "items)"
        assert fake.request_count == 1
        body = json.dumps(fake.requests[0].body)
        assert "UTIL_MARKER_77" in body  # a neighbour's snippet did reach the prompt...
        assert "VAULT-SECRET" not in body  # ...the excluded one did not


async def test_an_excluded_document_itself_is_served_locally(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"PRIVACY_KEY": KEY}
        ) as s:
            open_doc(s, "file:///p/.env", "API_TOKEN=")
            await s.client.text_document_inline_completion_async(
                T.InlineCompletionParams(
                    text_document=T.TextDocumentIdentifier("file:///p/.env"),
                    position=T.Position(0, 10),
                    context=T.InlineCompletionContext(
                        trigger_kind=T.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
            stats = await s.request("mlxd/stats", {})
        assert fake.request_count == 0 and fake.bytes_received == 0
        assert stats.inline.generations == 1  # it was served, by the local model
