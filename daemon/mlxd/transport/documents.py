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

from lsprotocol import types as T
from pygls.workspace import TextDocument, Workspace

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
    def _create_text_document(self, doc_uri: str, *args: Any, **kwargs: Any) -> TextDocument:
        doc = super()._create_text_document(doc_uri, *args, **kwargs)
        doc.__class__ = LSPTextDocument  # same state; LSP's line model for its methods
        return doc


def use_lsp_line_model(workspace: Workspace) -> None:
    """Make a pygls workspace create its documents on LSP's line model (call once, before
    the first didOpen)."""
    workspace.__class__ = LSPWorkspace
