"""Synced documents on LSP's line model, keyed by `uris.key`; pygls' public API only (its
private attributes are confined to pygls_adapter.py).

pygls' TextDocument splits lines with `str.splitlines()`, which also breaks at \\v, \\f,
\\x1c-\\x1e, \\x85, U+2028 and U+2029; LSP breaks lines at \\n, \\r\\n and \\r only. With a form
feed on its own line (a page break) or a U+2028 in a JS string, every incremental edit after it
landed on the wrong line. Here lines, positions and edits follow the spec: the three
terminators, the negotiated position encoding, and positions past a line's end or past the
last line clamped to that end (a character inside a surrogate pair rounds down).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lsprotocol import types as T
from pygls.workspace import TextDocument, Workspace

from .. import uris
from ..prompts import normalize_encoding, range_to_offsets

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class LSPTextDocument(TextDocument):
    """A pygls TextDocument whose text, lines and edits follow LSP's line model."""

    def __init__(self, uri: str, source: str | None = None, **kwargs: Any) -> None:
        super().__init__(uri, source, **kwargs)
        self.text = source or ""  # the synced text (pygls' own copy is not read)

    @property
    def source(self) -> str:
        return self.text

    @property
    def lines(self) -> Sequence[str]:
        """The lines with their terminators, split at \\n, \\r\\n and \\r only."""
        return tuple(_LINES.findall(self.text))

    def apply_change(self, change: T.TextDocumentContentChangeEvent) -> None:
        """A range edit in the negotiated encoding, or the whole document replaced."""
        if not isinstance(change, T.TextDocumentContentChangePartial):
            self.text = change.text
            return
        encoding = normalize_encoding(self.position_codec.encoding)
        text, r = self.text, change.range
        # A reversed range replaces nothing, like an empty one.
        start, end = range_to_offsets(
            text, (r.start.line, r.start.character), (r.end.line, r.end.character), encoding
        )
        self.text = text[:start] + change.text + text[end:]


class LSPWorkspace(Workspace):
    """Text documents on LSP's line model, keyed by `uris.key`: pygls keys them by
    `unquote(uri)`, so a didChange or didClose under another spelling of the opened URI
    (`file:///C:/x` opened, `file:///c%3A/x` changed, as VS Code writes it) missed the
    document. Each document keeps the URI it was opened with. Notebooks are not synced (no
    capability)."""

    def __init__(
        self,
        root_uri: str | None,
        sync_kind: T.TextDocumentSyncKind = T.TextDocumentSyncKind.Incremental,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(root_uri, sync_kind, *args, **kwargs)
        self.sync_kind = sync_kind
        self.open_documents: dict[str, LSPTextDocument] = {}  # by uris.key

    @property
    def text_documents(self) -> dict[str, LSPTextDocument]:  # type: ignore[override]
        return self.open_documents

    def document(self, uri: str, **kwargs: Any) -> LSPTextDocument:
        return LSPTextDocument(
            uri, sync_kind=self.sync_kind, position_codec=self.position_codec, **kwargs
        )

    def get_text_document(self, doc_uri: str) -> TextDocument:
        return self.open_documents.get(uris.key(doc_uri)) or self.document(doc_uri)

    def put_text_document(
        self, text_document: T.TextDocumentItem, notebook_uri: str | None = None
    ) -> None:
        self.open_documents[uris.key(text_document.uri)] = self.document(
            text_document.uri,
            source=text_document.text,
            version=text_document.version,
            language_id=text_document.language_id,
        )

    def update_text_document(
        self, text_doc: T.VersionedTextDocumentIdentifier, change: T.TextDocumentContentChangeEvent
    ) -> None:
        doc = self.open_documents[uris.key(text_doc.uri)]  # KeyError: never opened (pygls logs)
        doc.apply_change(change)
        doc.version = text_doc.version

    def remove_text_document(self, doc_uri: str) -> None:
        self.open_documents.pop(uris.key(doc_uri), None)
