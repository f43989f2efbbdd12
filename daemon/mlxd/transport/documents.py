"""Synced documents on LSP's line model.

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
from urllib.parse import unquote

from lsprotocol import types as T
from pygls.workspace import TextDocument, Workspace

from .. import uris
from ..prompts import normalize_encoding, position_to_offset

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class LSPTextDocument(TextDocument):
    @property
    def lines(self) -> Sequence[str]:
        """The lines with their terminators, split at \\n, \\r\\n and \\r only."""
        return tuple(_LINES.findall(self.source))

    def _apply_incremental_change(self, change: T.TextDocumentContentChangePartial) -> None:
        encoding = normalize_encoding(self.position_codec.encoding)
        source, r = self.source, change.range
        start = position_to_offset(source, r.start.line, r.start.character, encoding)
        end = position_to_offset(source, r.end.line, r.end.character, encoding)
        end = max(start, end)  # a reversed range replaces nothing, like an empty one
        self._source = source[:start] + change.text + source[end:]


class LSPWorkspace(Workspace):
    """Documents keyed by `uris.key`: pygls keys them by `unquote(uri)`, so a didChange or
    didClose under another spelling of the opened URI (`file:///C:/x` opened, `file:///c%3A/x`
    changed, as VS Code writes it) missed the document. Each document keeps the URI it was
    opened with."""

    def _create_text_document(self, doc_uri: str, *args: Any, **kwargs: Any) -> TextDocument:
        doc = super()._create_text_document(doc_uri, *args, **kwargs)
        doc.__class__ = LSPTextDocument  # same state; LSP's line model for its methods
        return doc

    def get_text_document(self, doc_uri: str) -> TextDocument:
        found = self._text_documents.get(uris.key(doc_uri))
        return found or self._create_text_document(doc_uri)

    def put_text_document(
        self, text_document: T.TextDocumentItem, notebook_uri: str | None = None
    ) -> None:
        key = uris.key(text_document.uri)
        self._text_documents[key] = self._create_text_document(
            text_document.uri,
            source=text_document.text,
            version=text_document.version,
            language_id=text_document.language_id,
        )
        if notebook_uri:  # notebooks are not synced (no capability); pygls' keys for its maps
            self._cell_in_notebook[unquote(text_document.uri)] = unquote(notebook_uri)

    def update_text_document(
        self, text_doc: T.VersionedTextDocumentIdentifier, change: T.TextDocumentContentChangeEvent
    ) -> None:
        doc = self._text_documents[uris.key(text_doc.uri)]  # KeyError: never opened (pygls logs it)
        doc.apply_change(change)
        doc.version = text_doc.version

    def remove_text_document(self, doc_uri: str) -> None:
        self._text_documents.pop(uris.key(doc_uri), None)
        self._cell_in_notebook.pop(unquote(doc_uri), None)


def use_lsp_line_model(workspace: Workspace) -> None:
    """Make a pygls workspace create its documents on LSP's line model (call once, before
    the first didOpen)."""
    workspace.__class__ = LSPWorkspace
