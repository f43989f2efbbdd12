"""Issue #15 proof: a byte-counting fake cloud. After a reload turns the cloud off (from the
user's settings, from the workspace layer, or by breaking the config file), every request kind
sends 0 bytes; the same requests before the reload reached the cloud, so the path was live."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import chat_params, cloud_first_config, daemon
from tests.e2e.test_privacy import open_doc
from tests.fakes.providers import FakeProvider, Reply

KEY = "sk-zero-bytes-0123456789"


def config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    kinds = ("chat", "complete", "inline")
    extra = "[inline]\nmax_ms = 20000\n"
    return cloud_first_config(tmp_path / "m.toml", tiny_model, url, "ZERO_KEY", kinds, extra)


async def every_kind(s) -> None:
    await s.request("mlxd/chat", chat_params("hello there", maxTokens=2))
    await s.request("mlxd/complete", {"prefix": "def f(", "maxTokens": 2})
    await s.client.text_document_inline_completion_async(
        T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier("file:///p/main.py"),
            position=T.Position(0, 6),
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
        )
    )


@pytest.mark.parametrize("how", ["user-settings", "workspace-layer", "broken-file"])
async def test_after_a_reload_turns_the_cloud_off_nothing_is_sent(tmp_path, tiny_model, how):
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["x)"])
        cfg = config(tmp_path, tiny_model, fake.openai_url)
        async with daemon(cfg, env={"ZERO_KEY": KEY}) as s:
            open_doc(s, "file:///p/main.py", "def f(")
            await every_kind(s)
            assert fake.request_count == 3  # the cloud path was live for every kind
            before = fake.bytes_received
            settings: dict = {}
            if how == "user-settings":
                settings = {"routing": {"cloud": False}}
            elif how == "workspace-layer":
                settings = {"workspace": {"routing": {"cloud": False}}}
            else:
                cfg.write_text(cfg.read_text() + "\n[routing.oops\n")
            s.client.workspace_did_change_configuration(
                T.DidChangeConfigurationParams(settings={"mlxd": settings} if settings else None)
            )
            await every_kind(s)
        assert fake.request_count == 3 and fake.bytes_received == before
