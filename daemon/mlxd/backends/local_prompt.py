"""A local model's prompt tokens: a completion's window rendered (FIM when the tokenizer has
FIM tokens, else a prefix continuation) or a chat's template, all within the model's context
window; and the tokenizer's FIM end tokens, on which a completion stops like on EOS."""

from __future__ import annotations

import logging
import weakref
from dataclasses import replace
from typing import Any

from ..errors import ContextOverflow
from ..models import CLOSE_THINK, OPEN_THINK
from ..prompts import Window, detect, fit_window
from ..types import Message, Request

log = logging.getLogger("mlxd.backends.local")


def room(lm: Any, max_tokens: int, default: int) -> int:
    """The most prompt tokens the model's context window leaves beside an answer."""
    size = context_window(lm.model)
    return default if size is None else size - min(max_tokens, size // 2)


def context_window(model: Any) -> int | None:
    """The model's context length in tokens, from its config (None: unknown, not guarded)."""
    args = getattr(model, "args", None)
    for key in _WINDOW_KEYS:
        value = getattr(args, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


_WINDOW_KEYS = ("max_position_embeddings", "max_seq_len", "n_ctx", "context_length", "seq_length")


def fit_prompt(lm: Any, req: Request, budget: int, max_tokens: int) -> tuple[list[int], int]:
    """The prompt's tokens and the max_tokens left for the answer, within the model's context
    window: a chat loses its oldest turns (system messages and the latest turn stay), a
    completion's `budget` (tokens around the cursor) shrinks, and max_tokens is cut to what
    fits. Raises ContextOverflow, naming the limit, when even the shortest prompt does not
    fit."""
    if req.kind != "chat":
        return render(lm, req, fit_window_for(lm, req, budget, max_tokens), max_tokens)
    window = context_window(lm.model)
    tokens = _chat_tokens(lm.tokenizer, req, window, max_tokens)
    return checked(lm, tokens, window, max_tokens)


def fit_window_for(
    lm: Any, req: Request, budget: int, max_tokens: int, *, with_suffix: bool = False
) -> Window:
    """A completion's text cut to `budget` tokens of the model's tokenizer (the one trim:
    prompts.fit_window), less when the context window must keep room for the answer. The
    suffix is dropped for a model without FIM, unless `with_suffix`."""
    tok, window = lm.tokenizer, context_window(lm.model)
    if window is not None:
        budget = max(1, min(budget, window - min(max_tokens, window // 2)))
    count = lambda s: len(tok.encode(s, add_special_tokens=False))  # noqa: E731
    fim = with_suffix or fim_template(tok) is not None
    return fit_window(count, req.prefix, req.suffix, req.header, budget, fim)


def top_window(lm: Any, req: Request, budget: int, max_tokens: int) -> Window:
    """The start of a completion's text (`req.prefix`: the whole document), in whole lines,
    cut to `budget` tokens the way `fit_window_for` cuts the text before a cursor: the prompt
    of any cursor in those lines starts with this one's tokens. No suffix: only the start of
    a prompt is prefilled (a FIM prompt's suffix comes after its prefix)."""
    # The document as the suffix of an empty prefix: trimming keeps a suffix's first lines.
    doc = replace(req, prefix="", suffix=req.prefix)
    start = fit_window_for(lm, doc, budget, max_tokens, with_suffix=True)
    return Window(start.header, start.suffix, "", start.count)


def render(lm: Any, req: Request, window: Window, max_tokens: int) -> tuple[list[int], int]:
    """The tokens of a completion prompt for `window` (FIM when the model has FIM tokens, else a
    prefix continuation) and the max_tokens the context window leaves beside them."""
    tok = lm.tokenizer
    prompt = window.render(fim_template(tok)) + req.assistant_prefix
    tokens = list(tok.encode(prompt, add_special_tokens=False))
    return checked(lm, tokens, context_window(lm.model), max_tokens)


def checked(
    lm: Any, tokens: list[int], window: int | None, max_tokens: int
) -> tuple[list[int], int]:
    """`tokens` and max_tokens cut to what the context window leaves; ContextOverflow, naming
    the limit, when the prompt alone fills it."""
    if window is None:
        return tokens, max_tokens
    if len(tokens) >= window:
        raise ContextOverflow(
            f"the prompt is {len(tokens)} tokens, over the context window of "
            f"{window} tokens of {lm.name}"
        )
    return tokens, min(max_tokens, window - len(tokens))


def _chat_tokens(tok: Any, req: Request, window: int | None, max_tokens: int) -> list[int]:
    def encode(msgs: list[Message]) -> list[int]:
        wire = [{"role": m.role, "content": m.content} for m in msgs]
        text = tok.apply_chat_template(wire, add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text + req.assistant_prefix, add_special_tokens=False))

    system = [m for m in req.messages if m.role == "system"]
    turns = [m for m in req.messages if m.role != "system"]
    tokens = encode(req.messages)
    if window is None:
        return tokens
    room = window - min(max_tokens, window // 2)  # keep room for an answer
    dropped = 0
    while len(tokens) > room and len(turns) > 1:
        turns.pop(0)
        while len(turns) > 1 and turns[0].role != "user":
            turns.pop(0)  # a conversation starts with a user turn
        dropped += 1
        tokens = encode(system + turns)
    if dropped:
        log.info(
            "chat trimmed to the context window (%d tokens): %d turns dropped", window, dropped
        )
    return tokens


# A tokenizer's FIM template never changes: detect it once, not on every keystroke.
_FIM_TEMPLATES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def fim_template(tokenizer: Any) -> Any:
    """The FIM template of a tokenizer (None: no FIM), from its special / added tokens."""
    if tokenizer not in _FIM_TEMPLATES:
        inner = getattr(tokenizer, "_tokenizer", tokenizer)
        names = set(getattr(inner, "all_special_tokens", []) or [])
        added = getattr(inner, "get_added_vocab", None)
        if added:
            names.update(added())
        _FIM_TEMPLATES[tokenizer] = detect(sorted(names))
    return _FIM_TEMPLATES[tokenizer]


_END_TOKENS: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()


def end_tokens(tokenizer: Any) -> frozenset[int]:
    """The ids of the tokenizer's FIM end tokens (the template's `eot_tokens` that are in its
    vocabulary): a completion stops on them in the batch engine, like on EOS."""
    if tokenizer not in _END_TOKENS:
        template = fim_template(tokenizer)
        vocab = getattr(tokenizer, "_tokenizer", tokenizer).get_vocab() if template else {}
        ends = template.eot_tokens if template else []
        _END_TOKENS[tokenizer] = frozenset(vocab[t] for t in ends if t in vocab)
    return _END_TOKENS[tokenizer]


def stop_ids(tokenizer: Any, prompt: list[int]) -> frozenset[int]:
    """The ids a completion (inline, complete) stops on in the batch engine, like on EOS: its
    FIM end tokens, and every control token (control_tokens) its prompt does not hold: their
    text is never ghost text, but a document that holds one (code that builds ChatML prompts)
    may be completed with it."""
    controls = control_tokens(tokenizer)
    return end_tokens(tokenizer) | (controls - set(prompt))


REASONING_TAGS = frozenset({OPEN_THINK, CLOSE_THINK})


_CONTROLS: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()


def control_tokens(tokenizer: Any) -> frozenset[int]:
    """Ids of the tokenizer's control tokens: its special tokens and the added tokens marked
    special (chat roles, file and repo markers: SmolLM2's `<|im_start|>`, `<file_sep>`,
    `<jupyter_code>` came out as ghost text), less reasoning tags (models/answer.py splits
    those off)."""
    if tokenizer not in _CONTROLS:
        inner = getattr(tokenizer, "_tokenizer", tokenizer)
        names = dict(zip(inner.all_special_ids, inner.all_special_tokens, strict=True))
        fast = getattr(inner, "_tokenizer", None)  # the Rust tokenizer under a fast one
        if fast is not None and hasattr(fast, "get_added_tokens_decoder"):
            added = fast.get_added_tokens_decoder().items()
            names |= {i: t.content for i, t in added if t.special}
        ids = (i for i, name in names.items() if name not in REASONING_TAGS)
        _CONTROLS[tokenizer] = frozenset(ids)
    return _CONTROLS[tokenizer]
