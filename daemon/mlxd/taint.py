"""Conversations that carried an excluded document stay local for their whole life.

A chat client resends the history with every follow-up, usually without a `textDocument`, so
"Explain Selection" on `.env` (local) followed by a typed question would send the `.env` text
to the cloud. Two rules close that:

1. Taint: when a request is routed with an excluded document, a hash of each of its user and
   assistant messages and of its answer is remembered with that document's URI (a system
   message only when it quotes an open excluded document: a client's fixed system prompt must
   not taint every later chat); a later request holding any remembered message is routed as if
   it named that document (and taints its own messages in turn, so the conversation stays
   local after its first messages scroll away). The memory outlives the session and the
   process: App's Process shares it among its sessions and the CLI keeps it in the per-user
   runtime directory (taint_file.py), so `mlxd stop`, a restart of `mlxd serve`, a Reload
   Window or another window do not lose it. A remembered document this session does not exclude
   (another window's workspace, a config since changed) keeps the request local all the same
   (uris.LOCAL_ONLY).
2. Content: a request whose text holds a line of an open excluded document (any line, with at
   least MIN_LINE non-blank characters) is routed as if it named that document. For an inline
   request (`inline_quotes`) the text is what a cloud provider would be sent: its header (with
   the neighbour snippets), prefix and suffix after the one trim (backends.sized); text beyond
   the budget is not sent and does not count. Rule 1 does not apply to inline requests: their
   texts are not remembered.

Both rules read every message, system messages included: a client (or a pasted history) may
fold earlier turns or a document into the system role.

3. Recovered: a session a shared daemon took over after its predecessor died
   (`recovered`) may have lost rule 1's memory (an entry not yet written, an unusable
   runtime directory), so a follow-up holding an assistant message this
   daemon did not write is routed as if it named an excluded document (uris.LOCAL_ONLY).

Messages are compared with their whitespace collapsed (CRLF, tabs, runs of spaces). Only
hashes are kept (at most MAX_REMEMBERED, least recently used dropped; in the file the most
recent), never text.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from .backends import sized
from .taint_file import Remembered
from .types import Request
from .uris import LOCAL_ONLY

MAX_REMEMBERED = 4096
MIN_MESSAGE = 16  # shorter messages ("ok", "thanks") are not remembered: too common
MIN_LINE = 12


def _digest(text: str) -> str:
    # Whitespace-insensitive: a client may resend a message with CRLF line ends, re-indented
    # or re-wrapped spacing; it is still the same message.
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


class Conversations:
    """Hashes of messages that travelled with an excluded document, -> that document's URI."""

    def __init__(self, recovered: bool = False, memory: Remembered | None = None) -> None:
        """`memory`: rule 1's memory, shared with the process's other sessions and kept in a
        file once attached (taint_file.py); None: this object's own, in memory."""
        self._seen = memory if memory is not None else remembered()
        self.recovered = recovered
        self._answered: OrderedDict[str, None] = OrderedDict()  # answers given (recovered only)

    def carried(self, texts: Iterable[str]) -> str | None:
        """The excluded document a remembered message came with, or None."""
        for text in texts:
            if (uri := self._seen.get(_digest(text))) is not None:
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
        system = [m.content for m in request.messages if m.role == "system"]
        open_documents = list(open_documents)
        # The prefix and suffix joined as well: a quoted line the cursor splits is sent whole.
        joined = [request.prefix + request.suffix] if request.prefix and request.suffix else []
        remembered = self.carried(texts + system)
        carried = remembered or quotes(texts + system + joined, open_documents, excluded)
        if not carried and self.recovered and self._from_before(request):
            carried = LOCAL_ONLY
        documents = documents + ([carried] if carried else [])
        tainted = next((d for d in documents if d == LOCAL_ONLY or excluded(d)), None)
        if remembered and not tainted:
            # Remembered by a session whose excludes this one lacks (another window's
            # workspace, a config since changed): the conversation stays local all the same.
            documents.append(LOCAL_ONLY)
            tainted = remembered
        if tainted:
            self.remember(texts, tainted)
            # A system prompt is a carrier only when it quotes the excluded document itself: a
            # client's fixed prompt would otherwise make every later chat local.
            self.remember([t for t in system if quotes([t], open_documents, excluded)], tainted)
        return documents, tainted

    def answered(self, text: str) -> None:
        """An answer this daemon gave: a later follow-up holding it is not from before."""
        if self.recovered:
            _put(self._answered, _digest(text), None)

    def _from_before(self, request: Request) -> bool:
        said = [m.content for m in request.messages if m.role == "assistant" and m.content.strip()]
        return any(_digest(t) not in self._answered for t in said)

    def remember(self, texts: Iterable[str], uri: str) -> None:
        for text in texts:
            if len(text.strip()) >= MIN_MESSAGE:
                self._seen.put(_digest(text), uri)


def remembered(path: Path | None = None) -> Remembered:
    """Rule 1's memory, of MAX_REMEMBERED entries; kept in `path` (taint_file.py) if given."""
    memory = Remembered(MAX_REMEMBERED)
    if path is not None:
        memory.attach(path)
    return memory


def _put(lru: OrderedDict, key: str, value: object) -> None:
    """Set `key` as the most recently used; the least recently used beyond MAX_REMEMBERED go."""
    lru[key] = value
    lru.move_to_end(key)
    while len(lru) > MAX_REMEMBERED:
        lru.popitem(last=False)


def quotes(
    texts: list[str], documents: Iterable[tuple[str, str]], excluded: Callable[[str], bool]
) -> str | None:
    """The URI of an open excluded document a line of which appears in `texts`, or None.
    `documents` are (uri, text) pairs. Every line of a document counts, wherever it is; both
    sides are compared with whitespace collapsed. Cost: one pass over `texts` per excluded
    document, whatever its length (its lines are indexed once per version, see _lines)."""
    joined = " ".join(" ".join(texts).split())
    if not joined:
        return None
    for uri, source in documents:
        if not excluded(uri):
            continue
        index = _lines(source)
        if not index:
            continue
        for i in range(len(joined) - MIN_LINE + 1):
            lines = index.get(joined[i : i + MIN_LINE])
            if lines and any(joined.startswith(line, i) for line in lines):
                return uri
    return None


def inline_quotes(
    request: Request, documents: Iterable[tuple[str, str]], excluded: Callable[[str], bool]
) -> str | None:
    """Rule 2 for an inline request: the URI of an open excluded document a line of which is in
    what a cloud provider would be sent (backends.sized: the header, and the prefix and suffix
    joined at the cursor, after the one trim), or None. `documents` are (uri, text) pairs. Free
    when no open document is excluded: nothing is sized or scanned then."""
    open_excluded = [(uri, text) for uri, text in documents if excluded(uri)]
    if not open_excluded:
        return None
    sent = sized(request)
    return quotes([sent.header, sent.prefix + sent.suffix], open_excluded, excluded)


@functools.lru_cache(maxsize=8)  # open excluded documents: few, maybe long
def _lines(source: str) -> dict[str, list[str]]:
    """The quotable lines of a document (MIN_LINE or more non-blank characters, whitespace
    collapsed), keyed by their first MIN_LINE characters."""
    index: dict[str, list[str]] = {}
    for raw in source.splitlines():
        line = " ".join(raw.split())
        if len(line.replace(" ", "")) >= MIN_LINE:
            index.setdefault(line[:MIN_LINE], []).append(line)
    return index
