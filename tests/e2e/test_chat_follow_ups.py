"""Issue #15 case 2: a chat follow-up never leaks an excluded document. The history is resent
without a textDocument; the daemon remembers the conversation (taint) and also recognises the
text of an open excluded document inside a request. Counted at the fake."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as T

from tests.conftest import cloud_first_config, daemon
from tests.fakes.providers import FakeProvider

KEY = "sk-follow-up-0123456789"
ENV_TEXT = "API_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2-but-longer\n"


def config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    kinds = ("chat", "complete")
    return cloud_first_config(tmp_path / "m.toml", tiny_model, url, "FOLLOW_KEY", kinds)


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


async def chat(s, messages: list[dict], uri: str | None = None):
    params: dict = {"messages": messages, "maxTokens": 3}
    if uri:
        params["textDocument"] = {"uri": uri}
    return await s.request("mlxd/chat", params)


async def test_follow_ups_of_a_conversation_about_an_excluded_file_stay_local(tmp_path, tiny_model):
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"FOLLOW_KEY": KEY}
        ) as s:
            first = msg("user", f"Explain this file:\n```\n{ENV_TEXT}```")
            r1 = await chat(s, [msg("system", "You are helpful."), first], "file:///p/.env")
            history = [first, msg("assistant", r1.text)]
            second = msg("user", "Which of these settings are unused?")
            r2 = await chat(s, [msg("system", "You are helpful."), *history, second])
            # the first messages scrolled out of the client's window: still the same conversation
            r3 = await chat(s, [second, msg("assistant", r2.text), msg("user", "And the DB one?")])
            assert fake.request_count == 0 and fake.bytes_received == 0
            assert {r1.backend, r2.backend, r3.backend} == {"local"}
            other = await chat(s, [msg("system", "You are helpful."), msg("user", "What is 2+2?")])
        assert other.backend == "cloud" and fake.request_count == 1


async def test_a_request_quoting_an_open_excluded_document_stays_local(tmp_path, tiny_model):
    async with FakeProvider(require_key=KEY) as fake:
        async with daemon(
            config(tmp_path, tiny_model, fake.openai_url), env={"FOLLOW_KEY": KEY}
        ) as s:
            s.client.text_document_did_open(
                T.DidOpenTextDocumentParams(
                    T.TextDocumentItem(
                        uri="file:///p/.env", language_id="dotenv", version=1, text=ENV_TEXT
                    )
                )
            )
            pasted = msg("user", "Is this ok?\nAPI_TOKEN=sk-live-5f2c9a8e7d6b")
            r = await chat(s, [pasted])
            assert r.backend == "local" and fake.request_count == 0
            done = await s.request(
                "mlxd/complete", {"prefix": "DB_PASSWORD=hunter2-but-longer\n", "maxTokens": 2}
            )
            assert done.backend == "local"
        assert fake.request_count == 0 and fake.bytes_received == 0
