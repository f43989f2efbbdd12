"""Issue #15 case 5: while the user's config file is invalid, nothing goes to the cloud, even
when the editor's settings turn it on, and mlxd/status says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chat_params, daemon, write_config
from tests.fakes.providers import FakeProvider


def editor_settings(url: str) -> dict:
    return {
        "backends": {"cloud": {"protocol": "openai", "base_url": url, "model": "m"}},
        "routing": {"cloud": True, "chat": ["cloud", "local"]},
    }


@pytest.mark.parametrize(
    "file_text",
    [
        # names a backend defined only in the editor's settings: invalid on its own
        '[routing]\ncloud = false\nchat = ["cloud", "local"]\nexclude = ["**/*.md"]\n',
        "[routing\ncloud = false\n",  # not TOML
        "[routing]\ncloud = 'no'\n",  # a wrong type
    ],
    ids=["names-editor-backend", "bad-toml", "bad-type"],
)
async def test_an_invalid_config_file_keeps_the_cloud_off(tmp_path: Path, tiny_model, file_text):
    cfg = write_config(tmp_path / "m.toml", file_text)
    async with FakeProvider() as fake:
        init = {**editor_settings(fake.openai_url), "local": {"model": str(tiny_model)}}
        async with daemon(cfg, init_options=init) as s:
            await s.request("mlxd/chat", chat_params("notes.md says...", maxTokens=2))
            status = s.statuses[-1]
        assert fake.request_count == 0 and fake.bytes_received == 0
    assert status["backends"]["cloud"] == "unconfigured"
    assert "cloud backends off until the config file is fixed" in status["message"]
    assert str(cfg) in status["message"]


async def test_a_fixed_file_turns_the_cloud_back_on_at_the_next_reload(tmp_path, tiny_model):
    from lsprotocol import types as T

    cfg = write_config(tmp_path / "m.toml", "[routing\n")
    async with FakeProvider() as fake:
        init = {**editor_settings(fake.openai_url), "local": {"model": str(tiny_model)}}
        async with daemon(cfg, init_options=init) as s:
            cfg.write_text("[routing]\nmax_retries = 1\n")
            s.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(None))
            await s.request("mlxd/chat", chat_params("hi", maxTokens=2))
            assert "message" not in s.statuses[-1] or "config file" not in s.statuses[-1]["message"]
        assert fake.request_count == 1
