"""Incremental detokenization: the pieces are exactly the decoded tokens, never U+FFFD."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxd.models.detokenize import TextStream


@pytest.fixture(scope="module")
def tok(tiny_model: Path):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(tiny_model)


def _stream(tok, prompt: str, generated: list[int]) -> tuple[list[str], str]:
    ts = TextStream(tok, tok.encode(prompt, add_special_tokens=False))
    pieces = [ts.add(t) for t in generated]
    pieces.append(ts.finish())
    return pieces, ts.text


@pytest.mark.parametrize(
    "answer",
    [" Paris.", " b", "  two spaces", "\n\tindented", " é 日本 ok", " a\r\nb", "x"],
)
def test_pieces_add_up_to_the_decoded_tokens_with_their_first_space(tok, answer: str) -> None:
    ids = tok.encode(answer, add_special_tokens=False)
    pieces, text = _stream(tok, "The capital of France is", ids)
    assert "".join(pieces) == text == tok.decode(ids) == answer
    assert not any("\ufffd" in p for p in pieces)


def test_mlx_lm_detokenizer_drops_the_first_space(tok) -> None:
    """Why the daemon decodes itself: mlx-lm's streaming detokenizer trims the first segment."""
    d = tok.detokenizer
    d.reset()
    for t in tok.encode(" Paris.", add_special_tokens=False):
        d.add_token(t)
    d.finalize()
    assert d.text == "Paris."


@pytest.mark.parametrize("answer", [" é", " 日本", " naïve 🙂"])
def test_a_cut_inside_a_character_drops_it_instead_of_sending_fffd(tok, answer: str) -> None:
    ids = tok.encode(answer, add_special_tokens=False)
    for n in range(1, len(ids) + 1):
        pieces, text = _stream(tok, "say", ids[:n])
        assert "\ufffd" not in text, (n, pieces)
        assert answer.startswith(text)
        assert "".join(pieces) == text


def test_a_continuation_after_a_prompt_ending_in_a_partial_word(tok) -> None:
    ids = tok.encode("ness of it", add_special_tokens=False)
    pieces, text = _stream(tok, "the happi", ids)
    assert text == "ness of it"
