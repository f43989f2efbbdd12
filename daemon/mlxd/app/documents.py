"""A session's synced documents, as the services see them: keyed by one normal form of the URI
(uris.key), so `file:///a%20b.py` and `file:///a b.py` are one document.

The text lives in the wire side's store (pygls' workspace, transport/documents.py), which keys
documents the same way; the server hands the store over as `store`. Closed documents are
remembered a while: an inline request that raced with its document's didClose (sent before it,
handled after) is answered with no items, not "not open".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .. import uris

CLOSED_REMEMBERED = 1024


class Documents:
    def __init__(self, store: Callable[[], Mapping[str, Any]] = dict) -> None:
        self.store = store  # -> {key: document with .source and .language_id}
        self._closed: dict[str, None] = {}

    @staticmethod
    def key(uri: str) -> str:
        return uris.key(uri)

    def get(self, uri: str) -> tuple[str, Any]:
        """(key, the open document or None)."""
        key = uris.key(uri)
        return key, self.store().get(key)

    def close(self, uri: str) -> str:
        """Remember that `uri` was closed; returns its key."""
        key = uris.key(uri)
        self._closed[key] = None
        if len(self._closed) > CLOSED_REMEMBERED:
            del self._closed[next(iter(self._closed))]
        return key

    def was_closed(self, key: str) -> bool:
        return key in self._closed

    def listing(self) -> list[tuple[str, str, str]]:
        """(key, language id, text) of every open document."""
        return [(k, d.language_id or "", d.source) for k, d in self.store().items()]

    def texts(self) -> list[tuple[str, str]]:
        """(key, text) of every open document (for the privacy rules on chat content)."""
        return [(k, d.source) for k, d in self.store().items()]
