"""Issue #15 case 3 over real stdio: excludes match the file itself (symlinks, case, `..`,
notebook cells), for chat and for neighbour context feeding inline. Counted at the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import chat_params, daemon
from tests.e2e.test_privacy import KEY, open_doc
from tests.e2e.test_privacy import config as _config
from tests.fakes.providers import FakeProvider, Reply

SECRET = "VAULT-SECRET-9f3a"


def config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    """test_privacy's config (cloud inline, neighbour snippets) with chat on the cloud too."""
    path = _config(tmp_path, tiny_model, url)
    path.write_text(
        path.read_text().replace("[routing]\n", '[routing]\nchat = ["cloud", "local"]\n')
    )
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    secrets = tmp_path / "proj" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "vault.py").write_text(f"TOKEN = '{SECRET}'\n")
    (tmp_path / "proj" / "innocent").symlink_to(secrets)
    return tmp_path / "proj"


def addresses(tree: Path) -> list[str]:
    return [
        (tree / "innocent" / "vault.py").as_uri(),  # a symlinked directory
        "file:///p/.ENV",
        "file:///p/Secrets/x.py",
        "file:///p/KEY.PEM",
        "file:///p/src/..//secrets/x.py",
        "vscode-notebook-cell:/p/server.pem#W1sZmlsZQ%3D%3D",
    ]


async def test_chat_about_any_spelling_of_an_excluded_file_stays_local(tmp_path, tiny_model, tree):
    async with FakeProvider(require_key=KEY) as fake:
        cfg = config(tmp_path, tiny_model, fake.openai_url)
        async with daemon(cfg, env={"PRIVACY_KEY": KEY}) as s:
            for uri in addresses(tree):
                params = chat_params(SECRET, maxTokens=2, textDocument={"uri": uri})
                await s.request("mlxd/chat", params)
            assert fake.request_count == 0 and fake.bytes_received == 0
            await s.request("mlxd/chat", chat_params("plain", maxTokens=2))
        assert fake.request_count == 1  # the cloud was on: the excludes alone kept it local


async def test_a_symlinked_excluded_neighbour_never_feeds_inline(tmp_path, tiny_model, tree):
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["x"])
        cfg = config(tmp_path, tiny_model, fake.openai_url)
        async with daemon(cfg, env={"PRIVACY_KEY": KEY}) as s:
            vault = f"def load_token():\n    return '{SECRET}' + compute_total(1)\n"
            open_doc(s, (tree / "innocent" / "vault.py").as_uri(), vault)
            open_doc(s, "file:///p/Secrets/VAULT2.py", vault)
            open_doc(s, "file:///p/main.py", "total = compute_total(")
            await s.client.text_document_inline_completion_async(
                T.InlineCompletionParams(
                    text_document=T.TextDocumentIdentifier("file:///p/main.py"),
                    position=T.Position(0, len("total = compute_total(")),
                    context=T.InlineCompletionContext(
                        trigger_kind=T.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
        assert fake.request_count == 1
        assert SECRET not in json.dumps(fake.requests[0].body)
