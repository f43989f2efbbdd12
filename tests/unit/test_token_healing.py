"""Token healing (models/healing.py): a prompt that ends mid-word is cut back one token, and
the answer must type that token's text again first; the text the document already has is
removed from the streamed answer. Real tokenizer (the tiny model's byte-level BPE), real
mlx-lm generation with the processor, and the batch engine's generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxd.models.healing import Healer, Unhealer, heal_point, vocabulary


@pytest.fixture(scope="module")
def tok(tiny_model: Path):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(scope="module")
def lm(tiny_model: Path):
    from mlxd.models import load_model

    return load_model(str(tiny_model))


def _ids(tok, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False))


@pytest.mark.parametrize(
    "prompt",
    ["def main():\n    status_cod", "x = compute(valu", "class AbstractMat", "    return self.res"],
)
def test_a_prompt_ending_mid_word_gives_back_its_last_token(tok, prompt: str) -> None:
    ids = _ids(tok, prompt)
    kept, healed = heal_point(tok, ids)
    assert kept == ids[:-1]
    assert healed and prompt.endswith(healed)
    assert tok.decode(kept) + healed == prompt


# A line break is healed with the blank space around it (the cursor after Enter): the
# vocabulary glues it to the next line's indentation.
@pytest.mark.parametrize("prompt", ["def f():\n", "    x = 1\n\n", "y = 2\r\n", "pass\n\n\n"])
def test_a_prompt_ending_with_a_line_break_gives_back_its_last_token(tok, prompt: str) -> None:
    ids = _ids(tok, prompt)
    kept, healed = heal_point(tok, ids)
    assert kept == ids[:-1]
    assert healed.strip(" \t") and not healed.strip() and prompt.endswith(healed)
    assert tok.decode(kept) + healed == prompt


@pytest.mark.parametrize(
    "prompt", ["x = compute(", "    return x +", "items = [a, b]", "if a ==", "a", "x = 1 "]
)
def test_a_prompt_ending_outside_a_word_is_not_healed(tok, prompt: str) -> None:
    ids = _ids(tok, prompt)
    assert heal_point(tok, ids) == (ids, "")


def test_the_vocabulary_is_each_token_alone_and_specials_are_empty(tok) -> None:
    vocab = vocabulary(tok)
    for text in (" return", "x", "ab"):
        (i,) = _ids(tok, text) if len(_ids(tok, text)) == 1 else (None,)
        if i is not None:
            assert vocab[i] == text
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert vocab[eos] == ""


def _greedy(lm, ids: list[int], processors, n: int) -> list[int]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    out = []
    for token, _ in generate_step(
        mx.array(ids),
        lm.model,
        max_tokens=n,
        sampler=make_sampler(temp=0.0),
        logits_processors=processors,
    ):
        out.append(int(token))
    return out


HEALED_PROMPTS = [
    "def main():\n    status_cod",
    "x = compute(valu",
    "class AbstractMat",
    "    return self.res",
    "import collecti",
    "for item in ite",
    "def main():\n",
    "    x = 1\n\n",
]


def test_a_healed_generation_types_the_cut_text_again_first(lm) -> None:
    """Whatever the (random) model prefers, the answer starts with the healed text, and the
    unhealed stream is what follows the cursor; without the healer, it does not always (so
    this test can fail)."""
    tok = lm.tokenizer
    free = []
    for prompt in HEALED_PROMPTS:
        kept, healed = heal_point(tok, _ids(tok, prompt))
        gen = _greedy(lm, kept, [Healer(healed, vocabulary(tok))], 8)
        text = tok.decode(gen)
        assert text.startswith(healed), (prompt, healed, text)
        unheal = Unhealer(healed)
        assert "".join(unheal.feed(tok.decode([t])) for t in gen) == text[len(healed) :]
        free.append(tok.decode(_greedy(lm, kept, None, 8)).startswith(healed))
    assert not all(free)


def test_the_healer_stops_constraining_once_the_text_is_typed(tok) -> None:
    import mlx.core as mx

    vocab = vocabulary(tok)
    healed = next(t for t in vocab if len(t) >= 3 and t.strip().isalpha())
    healer = Healer(healed, vocab)
    logits = mx.zeros((1, len(vocab)))
    first = healer(mx.array([1, 2]), logits)
    allowed = {i for i, v in enumerate(first[0].tolist()) if v == 0}
    assert allowed and all(
        healed.startswith(vocab[i]) or vocab[i].startswith(healed) for i in allowed
    )
    whole = vocab.index(healed)
    assert whole in allowed
    after = healer(mx.array([1, 2, whole]), logits)  # the whole text was sampled
    assert healer.done and mx.array_equal(after, logits)


@pytest.mark.parametrize(
    ("pieces", "shown"),
    [
        (["_cod", "e = 1"], "e = 1"),  # typed in pieces
        (["_c", "ode", " = 1"], "e = 1"),
        (["_code = 1"], "e = 1"),
        (["", "_code"], "e"),
        (["x = 1"], "x = 1"),  # disagrees: shown as is
    ],
)
def test_the_unhealer_drops_the_healed_text_across_pieces(pieces, shown) -> None:
    unheal = Unhealer("_cod")
    assert "".join(unheal.feed(p) for p in pieces) == shown


@pytest.mark.parametrize("left", ["_cod", " return", "od", "x", " ", "valu", "é"])
def test_the_agreeing_tokens_are_those_a_scan_finds(tok, left: str) -> None:
    vocab = vocabulary(tok)
    scan = {i for i, t in enumerate(vocab) if t and (t.startswith(left) or left.startswith(t))}
    assert sorted(vocab.agreeing(left)) == sorted(scan)


def test_the_vocabulary_is_what_the_tokenizer_decodes_token_by_token(tok) -> None:
    inner = tok._tokenizer
    specials = set(inner.all_special_ids)
    size = len(vocabulary(tok))
    slow = inner.batch_decode([[i] for i in range(size)])
    assert list(vocabulary(tok)) == ["" if i in specials else t for i, t in enumerate(slow)]
