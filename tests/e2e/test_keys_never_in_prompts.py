"""A key the daemon holds never goes to a provider in a request body, only in its own backend's
auth header: not from the document around the cursor, an open neighbour, a copy of a document
since closed (mlxd/didCopy), nor text sent to mlxd/complete (helper-96's observation: each of them sent it).
Real daemon over stdio, the loopback OpenAI-compatible provider, which records the bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.e2e.test_attack_one_trim import KEY
from tests.e2e.test_copy_ring import HELPER, NEAR, URI, copy, session
from tests.e2e.test_inline_e2e import inline, open_doc

pytestmark = pytest.mark.timeout(120)

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
