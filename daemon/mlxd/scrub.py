"""Keys out of what a provider is sent: every form of every key any KeyStore of this process
learned (secrets.py), taken out of request text with nothing else changed.

One set for the process: the shared daemon serves each editor window with a KeyStore of its own,
and a key one window handed over must not reach a provider from another window's text either.
"""

from __future__ import annotations

import re
import threading

# A key shorter than this is a placeholder (vLLM's EMPTY, Ollama's ollama), a word of the user's
# code: not taken out of prompts.
SCRUB_MIN = 8
REDACTED = "[REDACTED]"


class ProcessSecrets:
    """The forms of the keys learned so far, as one pattern (longest first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.forms: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.longest = 0

    def add(self, forms: list[str]) -> None:
        with self._lock:
            if not set(forms) - self.forms:
                return
            self.forms |= set(forms)
            alts = sorted(self.forms, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(f) for f in alts))
            self.longest = len(alts[0])


PROCESS = ProcessSecrets()


def scrub(text: str) -> str:
    """`text` with every form of every key this process holds replaced by [REDACTED], and
    nothing else changed (a key in a document would reach a provider, or another one, in the
    prompt; a backend's own goes in its auth header only)."""
    pattern = PROCESS.pattern
    return pattern.sub(REDACTED, text) if pattern is not None and text else text


def scrub_around(before: str, after: str) -> tuple[str, str]:
    """The text on either side of the cursor without a key the cursor splits: its head at the
    end of `before` becomes [REDACTED], its tail in `after` goes (a prompt puts a marker between
    them, and neither side holds the whole key). Whole keys are left to `scrub`, which every
    string of a request body goes through as it is sent (backends/http.py)."""
    pattern, n = PROCESS.pattern, PROCESS.longest
    if pattern is None or not before or not after:
        return before, after
    head = before[-n:]
    for m in pattern.finditer(head + after[:n]):
        if m.start() < len(head) < m.end():
            cut = len(before) - (len(head) - m.start())
            return before[:cut] + REDACTED, after[m.end() - len(head) :]
    return before, after
