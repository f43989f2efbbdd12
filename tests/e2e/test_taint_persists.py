"""Rule 1 of taint.py outlives the session and the process (taint_file.py): a conversation that
carried an excluded `.env` stays local when its history comes back in another session, another
process or another window. The sibling for `mlxd stop` + restart of the shared daemon is
test_attack5.test_a_conversation_tainted_before_mlxd_stop_stays_local_after_it. Real daemons
over real stdio, a real fake provider on loopback; each test has a runtime directory of its own
(`rt`), so no taint file is shared with another test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cloud_first_config
from tests.e2e import test_shared_daemon
from tests.e2e.test_shared_daemon import start_raw
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.slow
rt = test_shared_daemon.rt  # a runtime directory of the test's own; no daemon outlives it

KEY = "sk-taint-persists-0123456789abcdef"
URI = "file:///p/.env"
ASK = "please explain what this settings file configures"
OPENED = {
    "jsonrpc": "2.0",
    "method": "textDocument/didOpen",
    "params": {
        "textDocument": {
            "uri": URI,
            "languageId": "dotenv",
            "version": 1,
            "text": "DB_PASSWORD=hunter2\n",
        }
    },
}


def config(tmp_path: Path, tiny_model: Path, url: str, name: str, exclude: bool = True) -> Path:
    extra = 'exclude = ["**/.env"]\n' if exclude else ""
    return cloud_first_config(tmp_path / name, tiny_model, url, "K", ("chat",), extra)


async def taint(window: Any) -> dict[str, Any]:
    """Ask about the open .env (local: excluded); the follow-up that resends the history."""
    window.send(OPENED)
    first = {
        "messages": [{"role": "user", "content": ASK}],
        "maxTokens": 8,
        "textDocument": {"uri": URI},
    }
    r1 = (await window.request("mlxd/chat", first))["result"]
    assert r1["backend"] == "local"
    return {
        "messages": [
            {"role": "user", "content": ASK},
            {"role": "assistant", "content": r1["text"]},
            {"role": "user", "content": "and what else?"},
        ],
        "maxTokens": 2,
    }


async def test_in_process_a_tainted_conversation_stays_local_in_the_next_process(
    rt, tmp_path, tiny_model
):
    """In-process serving (MLXD_SHARED=0): window 2 runs while window 1 taints (it must see
    what window 1 wrote since it started); window 3 starts after both are gone (killed: no
    clean exit either)."""
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["cloud answer"])
        cfg = config(tmp_path, tiny_model, fake.openai_url, "m.toml")
        env = {"K": KEY, "MLXD_SHARED": "0"}
        windows = []
        try:
            w1 = await start_raw(rt, cfg, env=env)
            w2 = await start_raw(rt, cfg, env=env)
            windows += [w1, w2]
            await w1.initialize()
            await w2.initialize()
            # w2 has chatted before (it has loaded the file at start, then used its memory).
            hello = {"messages": [{"role": "user", "content": "hello there cloud"}], "maxTokens": 2}
            assert (await w2.request("mlxd/chat", hello))["result"]["backend"] == "cloud"
            asked = fake.request_count
            follow = await taint(w1)
            r = await w2.request("mlxd/chat", follow)
            assert r["result"]["backend"] == "local", r
            for w in (w1, w2):
                await w.kill()
            w3 = await start_raw(rt, cfg, env=env)
            windows.append(w3)
            await w3.initialize()
            r = await w3.request("mlxd/chat", follow)
            assert r["result"]["backend"] == "local", r
            assert fake.request_count == asked, fake.requests
            taint_file = rt / "taint"
            assert taint_file.stat().st_mode & 0o777 == 0o600
            assert ASK not in taint_file.read_text() and "hunter2" not in taint_file.read_text()
        finally:
            for w in windows:
                await w.kill()


@pytest.mark.parametrize("b_excludes", [True, False], ids=["same-config", "b-without-exclude"])
async def test_a_conversation_tainted_in_window_a_stays_local_in_window_b(
    rt, tmp_path, tiny_model, b_excludes
):
    """Two windows of one shared daemon: the history of a conversation about window A's .env,
    pasted into window B (which has no .env open), stays local; also when B's config does not
    exclude .env (the conversation carried a document excluded where it began)."""
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["cloud answer"])
        cfg_a = config(tmp_path, tiny_model, fake.openai_url, "a.toml")
        cfg_b = config(tmp_path, tiny_model, fake.openai_url, "b.toml", exclude=b_excludes)
        windows = []
        try:
            a = await start_raw(rt, cfg_a, env={"K": KEY})
            windows.append(a)
            await a.initialize()
            b = await start_raw(rt, cfg_b, env={"K": KEY})
            windows.append(b)
            await b.initialize()
            follow = await taint(a)
            r = await b.request("mlxd/chat", follow)
            assert r["result"]["backend"] == "local", r
            assert fake.request_count == 0 and fake.bytes_received == 0, fake.requests
            # B's other chats still go to the cloud: the taint is the conversation's only.
            other = {"messages": [{"role": "user", "content": "what is a monad?"}], "maxTokens": 2}
            assert (await b.request("mlxd/chat", other))["result"]["backend"] == "cloud"
        finally:
            for w in windows:
                await w.kill()
