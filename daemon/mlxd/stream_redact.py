"""Secrets kept out of generated text: a hostile provider may echo a key as model output,
whole or split across stream chunks.

A `StreamRedactor` holds back only the end of what streamed that could be the start of a
secret (at most the longest secret form - 1 characters, usually none), until later text or
the end of the stream decides; everything it hands on is redacted. The concatenation of what `feed` and `flush` return is the whole text
redacted, so the deltas a client gets add up to the final text. With no secret known it holds
nothing back.
"""

from __future__ import annotations

import re
from typing import Protocol

REDACTED = "[REDACTED]"
MIN_PARTIAL = 6  # a cut-off secret at the very end is redacted from this many characters on


class Secrets(Protocol):
    """What a StreamRedactor reads from the key store (secrets.KeyStore)."""

    @property
    def secret_pattern(self) -> re.Pattern[str] | None: ...

    def secret_forms(self) -> list[str]: ...


class StreamRedactor:
    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.held = ""  # streamed, not handed on yet

    def feed(self, text: str) -> str:
        """`text` appended; returns the redacted part that no later text can change."""
        self.held += text
        pattern = self.secrets.secret_pattern
        if pattern is None:
            return self.flush()
        # Before `cut` no secret can start that runs past the end: a match there is final.
        cut = len(self.held) - self._open_start()
        if cut <= 0:
            return ""
        for match in pattern.finditer(self.held):
            if match.start() >= cut:
                break
            cut = max(cut, match.end())
        out, self.held = self.held[:cut], self.held[cut:]
        return pattern.sub(REDACTED, out)

    def _open_start(self) -> int:
        """Length of the longest end of `held` that is the start of a secret form."""
        held, best = self.held, 0
        for form in self.secrets.secret_forms():
            for n in range(min(len(form) - 1, len(held)), best, -1):
                if held.endswith(form[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """Everything held, redacted; a secret's start cut off at the end is redacted too."""
        out, self.held = self.held, ""
        pattern = self.secrets.secret_pattern
        if pattern is None or not out:
            return out
        out = pattern.sub(REDACTED, out)
        tail = max(
            (n for form in self.secrets.secret_forms() for n in _overlaps(out, form)), default=0
        )
        return out[: len(out) - tail] + REDACTED if tail else out


def redacted(secrets: Secrets, text: str) -> str:
    """`text` as a whole stream redacted (a secret's start cut off at its end too)."""
    guard = StreamRedactor(secrets)
    return guard.feed(text) + guard.flush()


def _overlaps(text: str, form: str) -> list[int]:
    """Lengths n >= MIN_PARTIAL such that `text` ends with form[:n] (a cut-off secret)."""
    top = min(len(form) - 1, len(text))
    return [n for n in range(MIN_PARTIAL, top + 1) if text.endswith(form[:n])]
