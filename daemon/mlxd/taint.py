"""Conversations that carried an excluded document stay local for their whole life.

A chat client resends the history with every follow-up, usually without a `textDocument`, so
"Explain Selection" on `.env` (local) followed by a typed question would send the `.env` text
to the cloud. Two rules close that:

1. Taint: when a request is routed with an excluded document, a hash of each of its user and
   assistant messages and of its answer is remembered with that document's URI; a later request
   holding any remembered message is routed as if it named that document (and taints its own
   messages in turn, so the conversation stays local after its first messages scroll away).
2. Content: a request whose text holds a line of an open excluded document (a line with at
   least MIN_LINE non-blank characters) is routed as if it named that document.

Only hashes are kept (at most MAX_REMEMBERED, least recently used dropped), never text.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

from .types import Request

MAX_REMEMBERED = 4096
MIN_MESSAGE = 16  # shorter messages ("ok", "thanks") are not remembered: too common
MIN_LINE = 12
MAX_LINES = 5000  # lines of one excluded document looked for


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()


class Conversations:
    """Hashes of messages that travelled with an excluded document, -> that document's URI."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()

    def carried(self, texts: Iterable[str]) -> str | None:
        """The excluded document a remembered message came with, or None."""
        for text in texts:
            uri = self._seen.get(_digest(text))
            if uri is not None:
                self._seen.move_to_end(_digest(text))
                return uri
        return None

    def route(
        self,
        request: Request,
        documents: list[str],
        open_documents: Iterable[tuple[str, str]],
        excluded: Callable[[str], bool],
    ) -> tuple[list[str], str | None]:
        """The documents to route `request` by (plus the excluded one its conversation carried
        or its text quotes), and the excluded document that taints it, if any. A tainted
        request's texts are remembered; remember its answer too once there is one."""
        texts = [m.content for m in request.messages if m.role != "system"]
        texts += [t for t in (request.prefix, request.suffix) if t]
        carried = self.carried(texts) or quotes(texts, open_documents, excluded)
        documents = documents + ([carried] if carried else [])
        tainted = next((d for d in documents if excluded(d)), None)
        if tainted:
            self.remember(texts, tainted)
        return documents, tainted

    def remember(self, texts: Iterable[str], uri: str) -> None:
        for text in texts:
            if len(text.strip()) >= MIN_MESSAGE:
                self._seen[_digest(text)] = uri
                self._seen.move_to_end(_digest(text))
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)


def quotes(
    texts: list[str], documents: Iterable[tuple[str, str]], excluded: Callable[[str], bool]
) -> str | None:
    """The URI of an open excluded document a line of which appears in `texts`, or None.
    `documents` are (uri, text) pairs."""
    joined = "\n".join(texts)
    if not joined.strip():
        return None
    for uri, source in documents:
        if not excluded(uri):
            continue
        for n, line in enumerate(source.splitlines()):
            if n >= MAX_LINES:
                break
            line = line.strip()
            if len(line.replace(" ", "")) >= MIN_LINE and line in joined:
                return uri
    return None
