"""Suggestion cache with typing-through reuse.

While ghost text is shown the user often types exactly what it suggests. Each keystroke
brings a new request whose prefix is the old prefix plus the typed characters; answering it
with the rest of the old suggestion costs nothing and keeps the ghost text steady instead of
flickering while the model runs again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from . import why

# (uri, len(prefix), hash(prefix), hash(suffix)): a position's key holds no copy of the
# document, so 256 entries of a 50 MB file cost 256 small tuples, not 12.8 GB (attack, session
# 25). str's hash is SipHash keyed per process: text a repository chose cannot aim a collision.
Key = tuple[str, int, int, int]


def _key(uri: str, prefix: str, suffix: str) -> Key:
    return (uri, len(prefix), hash(prefix), hash(suffix))


@dataclass(slots=True)
class CacheStats:
    hits: int = 0  # exact key or typing-through
    typed_through: int = 0  # the subset of hits that were typing-through
    misses: int = 0


class InlineCache:
    """A bounded LRU of (uri, prefix, suffix) -> suggestion, keyed by the texts' lengths and
    hashes (Key).

    The prefix and suffix are the whole document around the cursor, so an edit anywhere else
    in the document is a miss. "" is a valid suggestion (the model had nothing good to say at
    that exact position) and is returned only on an exact key match.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, str] = OrderedDict()
        self.stats = CacheStats()

    @property
    def hits(self) -> int:
        return self.stats.hits

    @property
    def misses(self) -> int:
        return self.stats.misses

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, uri: str, prefix: str, suffix: str, suggestion: str) -> None:
        key = _key(uri, prefix, suffix)
        self._entries[key] = suggestion
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, uri: str, prefix: str, suffix: str, *, count: bool = True) -> str | None:
        """The suggestion to show at this position, or None when the model must be asked.

        Typing-through: an entry whose prefix the new prefix extends, with the same suffix,
        whose suggestion starts with the typed text, answers with the rest of its suggestion.
        A fully typed suggestion answers None: what comes next is for the model to say.
        `count`: in the statistics (False: a request that already counted its miss looks again).
        """
        key = _key(uri, prefix, suffix)
        exact = self._entries.get(key)
        if exact is not None:
            self._entries.move_to_end(key)
            self.stats.hits += count
            if not exact:
                why.note("this position's last answer was empty (cached until the text changes)")
            return exact
        rest = self._typed_through(uri, prefix, suffix)
        if rest is None:
            self.stats.misses += count
            return None
        self.stats.hits += count
        self.stats.typed_through += count
        return rest

    def _typed_through(self, uri: str, prefix: str, suffix: str) -> str | None:
        """The newest entry the user is typing through, as the rest of its suggestion."""
        suffix_hash = hash(suffix)
        for key, suggestion in reversed(self._entries.items()):
            e_uri, e_len, e_hash, e_suffix_hash = key
            if e_uri != uri or e_len >= len(prefix) or not suggestion:
                continue
            typed_len = len(prefix) - e_len
            if typed_len >= len(suggestion) or e_suffix_hash != suffix_hash:
                continue
            # the slice copies the prefix: done only for an entry whose suggestion was typed
            if suggestion.startswith(prefix[e_len:]) and hash(prefix[:e_len]) == e_hash:
                self._entries.move_to_end(key)
                return suggestion[typed_len:]
        return None

    def peek(self, uri: str, prefix: str, suffix: str) -> str | None:
        """The entry stored at exactly this key, if any; no statistics, no typing-through."""
        return self._entries.get(_key(uri, prefix, suffix))

    def discard(self, uri: str, prefix: str, suffix: str) -> None:
        """Drop one entry (a pregenerated item the document's edits made stale)."""
        self._entries.pop(_key(uri, prefix, suffix), None)

    def forget(self, uri: str) -> None:
        """Drop a document's entries (didClose)."""
        for key in [k for k in self._entries if k[0] == uri]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
