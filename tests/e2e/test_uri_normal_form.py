"""Issue #14 item 1: one normal form of a document URI. A percent-encoded URI (what VS Code
sends for a space, a Windows drive, a non-ASCII name) is the same document everywhere:
inline lookup, neighbours, didClose, caches."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc

ENCODED = [
    ("file:///home/ana/My%20Project/app.py", "file:///home/ana/My Project/app.py"),
    ("file:///c%3A/work/app.py", "file:///C:/work/app.py"),
    ("file:///home/jos%C3%A9/a.py", "file:///home/jos\u00e9/a.py"),
]


@pytest.fixture
def cfg(tmp_path: Path, tiny_model: Path) -> Path:
    return write_config(
        tmp_path / "inline.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 4\nmax_ms = 20000\n'
        "whole_lines = false\n",  # the random model never ends a line: a cut "" is not cached
    )


@pytest.mark.parametrize("opened, other", ENCODED, ids=["space", "drive", "utf8"])
async def test_an_encoded_uri_is_one_document_for_every_request(cfg, opened, other):
    async with daemon(cfg) as s:
        open_doc(s, "def add(a, b):\n    return a +", uri=opened)
        for uri in (opened, other):  # as opened, and in another spelling of the same address
            result = await inline(s, 1, len("    return a +"), kind=2, uri=uri)  # no alternatives
            assert isinstance(result, T.InlineCompletionList)
        stats = await s.request("mlxd/stats", {})
        # the second spelling hit the first one's cached suggestion: one document, one key
        assert stats.inline.generations == 1
        s.client.text_document_did_close(
            T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(other))
        )
