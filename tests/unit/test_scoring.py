"""log P(continuation | prompt) on a real model (models/scoring.py): from the engine's prompt
cache (nothing there, an exact entry, a longer one trimmed) it equals the sum computed from one
forward pass over the whole text, and the prompt cache itself is left as it was."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mlxd.models import continuation_logprob, prompt_state

PROMPT = "def add(a, b):\n    return"
CONTINUATIONS = [" a + b\n\nprint(add(1, 2))", " a - b\n\nprint(add(1, 2))", " None"]


@pytest.fixture(scope="module")
def lm(tiny_model: Path):
    from mlxd.models import load_model

    return load_model(str(tiny_model))


def engine(lm):
    from mlx_lm.models.cache import LRUPromptCache

    return SimpleNamespace(lm=lm, cache=LRUPromptCache(max_size=4, max_bytes=1 << 30))


def ids(lm, text: str) -> list[int]:
    return list(lm.tokenizer.encode(text, add_special_tokens=False))


def direct(lm, prompt: list[int], cont: list[int]) -> float:
    """The same sum from one forward pass over prompt + continuation, no cache."""
    import mlx.core as mx

    logits = lm.model(mx.array(prompt + cont)[None])[0].astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    rows = logp[len(prompt) - 1 : len(prompt) + len(cont) - 1]
    return float(mx.take_along_axis(rows, mx.array(cont)[:, None], axis=-1).sum().item())


def filled(lm, tokens: list[int]):
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(lm.model)
    lm.model(mx.array(tokens)[None], cache=cache)
    mx.eval([c.state for c in cache])
    return cache


@pytest.mark.parametrize("held", ["nothing", "exact", "longer"])
def test_it_equals_one_forward_pass_over_the_whole_text(lm, held: str) -> None:
    eng = engine(lm)
    prompt = ids(lm, PROMPT)
    if held == "exact":
        eng.cache.insert_cache(lm.name, prompt[:-1], filled(lm, prompt[:-1]))
    elif held == "longer":  # an answer kept after the prompt: trimmed back to it
        longer = prompt + ids(lm, " a * b\n")
        eng.cache.insert_cache(lm.name, longer, filled(lm, longer))
    state = prompt_state(eng, prompt)
    assert state[0].offset == len(prompt) - 1
    for text in CONTINUATIONS:
        cont = ids(lm, text)
        got = continuation_logprob(eng, state, prompt[-1], cont)
        assert got < 0
        assert got == pytest.approx(direct(lm, prompt, cont), abs=1e-3)
    assert state[0].offset == len(prompt) - 1  # each continuation ran on a copy


def test_an_empty_continuation_scores_zero(lm) -> None:
    eng = engine(lm)
    prompt = ids(lm, PROMPT)
    assert continuation_logprob(eng, prompt_state(eng, prompt), prompt[-1], []) == 0.0
