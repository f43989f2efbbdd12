"""documents.py: the workspace keys every document operation by `uris.key` (issue #14 attack
finding 1): pygls keyed open/change/close by `unquote(uri)`, so a change or close under another
spelling of the opened URI missed the document."""

from __future__ import annotations

import pytest
from lsprotocol import types as T

from mlxd.transport.documents import LSPWorkspace

OPENED = "file:///C:/work/caf%C3%A9.py"
SPELLINGS = ["file:///c%3A/work/caf%c3%a9.py", "file://localhost/c:/work/café.py"]


def workspace() -> LSPWorkspace:
    ws = LSPWorkspace(None)
    ws.put_text_document(T.TextDocumentItem(OPENED, "python", 1, "a = 1\n"))
    return ws


@pytest.mark.parametrize("other", SPELLINGS)
def test_a_change_under_another_spelling_reaches_the_document(other: str) -> None:
    ws = workspace()
    change = T.TextDocumentContentChangePartial(
        range=T.Range(T.Position(0, 0), T.Position(0, 0)), text="X"
    )
    ws.update_text_document(T.VersionedTextDocumentIdentifier(version=2, uri=other), change)
    doc = ws.get_text_document(other)
    assert (doc.source, doc.version, doc.uri) == ("Xa = 1\n", 2, OPENED)
    assert len(ws.text_documents) == 1


@pytest.mark.parametrize("other", SPELLINGS)
def test_a_close_under_another_spelling_closes_the_document(other: str) -> None:
    ws = workspace()
    ws.remove_text_document(other)
    assert not ws.text_documents


def test_a_reopen_under_another_spelling_replaces_the_document() -> None:
    ws = workspace()
    ws.put_text_document(T.TextDocumentItem(SPELLINGS[0], "python", 5, "b = 2\n"))
    assert [d.source for d in ws.text_documents.values()] == ["b = 2\n"]


def test_a_change_to_a_document_never_opened_is_refused() -> None:
    ws = workspace()
    change = T.TextDocumentContentChangeWholeDocument(text="x")
    with pytest.raises(KeyError):
        ws.update_text_document(
            T.VersionedTextDocumentIdentifier(version=2, uri="file:///w/other.py"), change
        )
