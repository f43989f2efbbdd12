"""Incremental detokenization: generated token ids in, text pieces out.

The pieces add up to exactly what the tokenizer decodes for the generated tokens in the
context of the prompt. mlx-lm's streaming detokenizers trim the first segment's leading space
("Paris." for " Paris."), so the daemon decodes itself: each step decodes a small window of
recent tokens twice (with and without the new ones) and emits the difference, the way vLLM and
TGI do. The window starts on the prompt's last tokens, so a leading space of the first
generated token is kept (SentencePiece drops it only at the start of a decode).

A piece that would end inside a multi-byte character (the decoder gives U+FFFD for the
incomplete bytes) is held until the character is whole; at the end, an incomplete character
is dropped rather than sent as U+FFFD.
"""

from __future__ import annotations

from typing import Any

CONTEXT_TOKENS = 4  # prompt tokens the first window starts on
_INCOMPLETE = "\ufffd"


class TextStream:
    def __init__(self, tokenizer: Any, prompt: list[int]) -> None:
        self._tok = tokenizer
        self._ids = list(prompt[-CONTEXT_TOKENS:])
        self._prefix = 0  # window start
        self._read = len(self._ids)  # tokens whose text was emitted
        self.text = ""  # everything emitted so far

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        """Add one generated token; return the text it completes (often "")."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith(_INCOMPLETE):
            return ""  # a partial character (or nothing visible yet): wait for more bytes
        piece = after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        self.text += piece
        return piece

    def finish(self) -> str:
        """The end of generation: what is held back, less an incomplete last character."""
        if self._read >= len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._read = len(self._ids)
        piece = after[len(before) :].rstrip(_INCOMPLETE)
        self.text += piece
        return piece
