"""Token healing: a prompt that ends inside a word, or with a line break, is cut back to the
last token boundary, and the answer must first type the cut text again (a constrained first
step or few).

A cursor mid-word (`status_cod┃`) makes the prompt end with a token the tokenizer chose only
because the word stops there (`_cod`), a split the model rarely saw in training: it answers
with junk that fits after that odd piece (`status_cod` + `erecord`). Backing up over the last
token and allowing, for the next steps, only tokens that agree with the text backed over
(`_code` is allowed, `_c` is too, `x` is not) lets the model choose the natural split. The
answer then starts with that text, which the caller removes (the document already has it).

A line break is the same mistake at a line start, the cursor after Enter: BPE vocabularies glue
the line break to the next line's indentation (`\n       ` + ` self`), so a prompt that ends
with a lone `\n` tells the model the next line starts at column 0, and it answers with
something that does (`#`, `class`) even inside a function body. Healed, it chooses the
indentation with the line break.
"""

from __future__ import annotations

import bisect
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

# A prompt that ends inside a word (a letter, digit or underscore) or with blank space that holds
# a line break is healed: after an operator or a bracket the split is the natural one, and the
# spaces before the cursor on its line are left out of the prompt already
# (prompts.CursorContext.trailing_space).
_WORD_END = re.compile(r"\w$")
_LINE_BREAK = re.compile(r"\A[ \t]*\r?\n[ \t\r\n]*\Z")
# The most text backed over: one token of code rarely holds more.
MAX_HEAL_CHARS = 24


class Vocabulary(list[str]):
    """Each token id's text, as the detokenizer would write it alone ("" for a special
    token), indexed to find the tokens that agree with a text in O(log n)."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__(texts)
        pairs = sorted((t, i) for i, t in enumerate(texts) if t)
        self._texts = [t for t, _ in pairs]
        self._ids = [i for _, i in pairs]
        self._by_text: dict[str, list[int]] = {}
        for t, i in pairs:
            self._by_text.setdefault(t, []).append(i)

    def agreeing(self, left: str) -> list[int]:
        """Ids of the tokens that start with `left`, or that `left` starts with."""
        lo = bisect.bisect_left(self._texts, left)
        hi = bisect.bisect_left(self._texts, left + "\U0010ffff")
        ids = self._ids[lo:hi]
        for n in range(1, len(left)):
            ids += self._by_text.get(left[:n], [])
        return ids


_VOCABS: weakref.WeakKeyDictionary[Any, Vocabulary] = weakref.WeakKeyDictionary()
_BUILDING = threading.Lock()  # one build: concurrent first requests each built their own


def vocabulary(tokenizer: Any) -> Vocabulary:
    """The tokenizer's Vocabulary, built once (a 50k vocabulary: ~0.2 s with a fast
    tokenizer's batch decode, ~1.5 s through transformers' per-token one); the model loader
    builds it before the model is ready."""
    inner = getattr(tokenizer, "_tokenizer", tokenizer)
    if (built := _VOCABS.get(inner)) is not None:
        return built
    with _BUILDING:
        if inner in _VOCABS:
            return _VOCABS[inner]
        size = max(inner.get_vocab().values()) + 1
        special = set(getattr(inner, "all_special_ids", []) or [])
        ids = [[i] for i in range(size)]
        fast = getattr(inner, "_tokenizer", None)  # the Rust tokenizer under a fast one
        if fast is not None and hasattr(fast, "decode_batch"):
            texts = fast.decode_batch(ids, skip_special_tokens=False)
        else:
            texts = inner.batch_decode(ids)
        _VOCABS[inner] = Vocabulary(["" if i in special else t for i, t in enumerate(texts)])
    return _VOCABS[inner]


def heal_point(tokenizer: Any, tokens: list[int]) -> tuple[list[int], str]:
    """(the prompt without its last token, that token's text) when the prompt ends inside a
    word or with a line break (blank space around it); (tokens, "") otherwise."""
    if len(tokens) < 2:
        return tokens, ""
    text = vocabulary(tokenizer)[tokens[-1]]
    if not text or len(text) > MAX_HEAL_CHARS or "\ufffd" in text:
        return tokens, ""
    if _LINE_BREAK.match(text) or (_WORD_END.search(text) and "\n" not in text):
        return tokens[:-1], text
    return tokens, ""


def healed_prompt(tokenizer: Any, tokens: list[int]) -> tuple[list[int], Healer | None]:
    """(the prompt to send, the Healer its answer needs, or None): heal_point's cut, and the
    logits processor that makes the answer type the cut text again first."""
    kept, healed = heal_point(tokenizer, tokens)
    return kept, Healer.of(tokenizer, healed) if healed else None


@dataclass(eq=False)
class Healer:
    """A logits processor (mlx-lm's `(tokens, logits) -> logits`) that allows, while the
    healed text is not typed yet, only tokens that agree with what is left of it: a token
    that is a start of the rest, or that starts with the rest. It reads the token sampled
    after its previous call from the end of `tokens` (the context so far, as mlx-lm's
    generate_step and BatchGenerator pass it); `done` once the healed text is typed."""

    healed: str
    vocab: Vocabulary
    left: str = field(init=False)
    _allowed: dict[str, Any] = field(default_factory=dict, init=False)
    _started: bool = field(default=False, init=False)
    _shown: Unhealer = field(init=False)

    def __post_init__(self) -> None:
        self.left = self.healed
        self._shown = Unhealer(self.healed)

    @classmethod
    def of(cls, tokenizer: Any, healed: str) -> Healer:
        return cls(healed, vocabulary(tokenizer))

    def unheal(self, piece: str) -> str:
        """A streamed piece of the answer without the healed text (see Unhealer)."""
        return self._shown.feed(piece)

    @property
    def done(self) -> bool:
        return not self.left

    def feed(self, token: int) -> None:
        text = self.vocab[token] if 0 <= token < len(self.vocab) else ""
        self.left = self.left[len(text) :] if self.left.startswith(text) else ""

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self._started:  # the last token is the one sampled after the previous call
            self.feed(int(tokens.reshape(-1)[-1].item()))
        self._started = True
        if self.done:
            return logits
        mask = self._allowed.get(self.left)
        if mask is None:
            ids = self.vocab.agreeing(self.left)
            mask = mx.full((len(self.vocab),), float("-inf"))
            if ids:
                mask[mx.array(ids)] = 0.0
            self._allowed[self.left] = mask
        width = logits.shape[-1]
        if width != mask.shape[0]:  # the model's output row may be padded past the vocabulary
            pad = mx.full((width - mask.shape[0],), float("-inf"))
            mask = mx.concatenate([mask, pad]) if width > mask.shape[0] else mask[:width]
        return logits + mask


class Unhealer:
    """Streamed answer pieces without the healed text the answer starts with (the document
    already has it): `feed` each piece in order."""

    def __init__(self, healed: str) -> None:
        self.left = healed

    def feed(self, piece: str) -> str:
        if not self.left:
            return piece
        n = min(len(piece), len(self.left))
        if piece[:n] != self.left[:n]:  # it disagrees (the constraint was not kept): as is
            self.left = ""
            return piece
        self.left = self.left[n:]
        return piece[n:]
