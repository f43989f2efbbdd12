"""A key the daemon holds never goes to a provider in a request body, only in its own backend's
auth header: not from the document around the cursor, an open neighbour, a copy of a document
since closed (mlxd/didCopy), nor text sent to mlxd/complete (helper-96's observation: each of them sent it).
Real daemon over stdio, the loopback OpenAI-compatible provider, which records the bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import _plain, daemon
from tests.e2e.test_attack_one_trim import ENV, KEY, cloud_config
from tests.e2e.test_copy_ring import HELPER, NEAR, URI, copy, session
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_shared_daemon import rt, shared  # noqa: F401 (rt: a fixture)
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.timeout(150)

KEYED = HELPER + f"    api_key = '{KEY}'\n"


@pytest.mark.parametrize("via", ["document", "neighbour", "copy of a closed document", "complete"])
async def test_the_daemons_own_key_is_never_in_a_request_body(
    tmp_path: Path, tiny_model: Path, via: str
) -> None:
    other = "file:///work/project/headers.py"
    async with session(tmp_path, tiny_model) as (s, fake):
        if via == "document":
            open_doc(s, KEYED + NEAR, uri=URI)
            await inline(s, KEYED.count("\n") + 2, 4, kind=2, uri=URI)
        elif via == "complete":
            await s.request("mlxd/complete", {"prefix": KEYED, "suffix": "", "maxTokens": 3})
        else:
            open_doc(s, KEYED, uri=other)
            if via == "copy of a closed document":
                copy(s, KEYED, uri=other)
                s.client.text_document_did_close(
                    T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(other))
                )
            open_doc(s, NEAR, uri=URI)
            await inline(s, 2, 4, kind=2, uri=URI)
    assert fake.request_count == 1  # it went to the provider: the check can fail
    bodies = json.dumps([r.body for r in fake.requests])
    assert KEY not in bodies and "[REDACTED]" in bodies
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)


CUT = 12  # the cursor after "sk-attack-on": neither side holds the whole key


async def test_a_key_the_cursor_splits_is_taken_out_of_both_sides(
    tmp_path: Path, tiny_model: Path
) -> None:
    # helper-97: a chat prompt puts `<CURSOR>` between prefix and suffix, and each side was
    # scrubbed alone, so the key went out whole around the marker (inline and mlxd/complete).
    line = f"API_KEY = '{KEY}'\n"
    async with session(tmp_path, tiny_model) as (s, fake):
        open_doc(s, "import os\n" + line + "print(API_KEY)\n", uri=URI)
        await inline(s, 1, len("API_KEY = '") + CUT, kind=2, uri=URI)
        await s.request(
            "mlxd/complete", {"prefix": "k = '" + KEY[:CUT], "suffix": KEY[CUT:] + "'\n"}
        )
    assert fake.request_count == 2
    joined = json.dumps([r.body for r in fake.requests]).replace("<CURSOR>", "")
    assert KEY[:CUT] not in joined and KEY[CUT:] not in joined and "[REDACTED]" in joined


async def test_a_key_one_window_handed_over_is_not_sent_from_another(
    rt: Path,  # noqa: F811
    tmp_path: Path,
    tiny_model: Path,
) -> None:
    # helper-97: each window of the shared daemon has a KeyStore of its own, and window B's
    # scrub did not know the key window A handed over, though one process holds both.
    window_a_key = "sk-window-a-handed-over-9f8e7d6c5b4a"
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url)
        async with daemon(cfg, env={**ENV, **shared(rt)}) as a:
            await a.request("mlxd/setApiKey", {"backend": "cloud", "apiKey": window_a_key})
            async with daemon(cfg, env={**ENV, **shared(rt)}) as b:
                pa = _plain(await a.request("mlxd/stats", {}))["server"]["pid"]
                pb = _plain(await b.request("mlxd/stats", {}))["server"]["pid"]
                assert pa == pb  # one daemon process holds both windows
                open_doc(b, f"import os\nTOKEN = '{window_a_key}'\nx = ", uri=URI)
                await inline(b, 2, 4, kind=2, uri=URI)
    assert fake.request_count == 1
    assert window_a_key not in json.dumps([r.body for r in fake.requests])
