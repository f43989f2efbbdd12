"""Token healing over real stdio with the tiny model: an inline request whose cursor is
mid-word, or at a line start, is answered from the prompt cut back one token, its first tokens constrained to type
that token's text again, which the item leaves out (models/healing.py). The item is compared
with the same generation run here through mlx-lm (greedy: the daemon's batch engine gives the
same tokens), and the unhealed answer differs from it, so the test can fail."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlxd.config import decode
from mlxd.inline.cuts import cleaned
from mlxd.inline.engine import InlineEngine
from mlxd.models.healing import Healer, heal_point, vocabulary
from tests.conftest import daemon, write_config
from tests.e2e.test_inline_e2e import URI, inline, open_doc

INLINE = {"max_tokens": 16, "max_ms": 20000, "whole_lines": False, "background": False}


@pytest.fixture(scope="module")
def tiny_lm(tiny_model: Path) -> Any:
    import mlx_lm

    model, tok = mlx_lm.load(str(tiny_model))
    return SimpleNamespace(model=model, tokenizer=tok, name="tiny")


def expected_item(lm: Any, text: str, heal: bool) -> str:
    """The item the inline path shows for a cursor at the end of `text`, the prompt healed or
    not: the engine's request, the local backend's prompt, greedy mlx-lm, the clean-up."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from mlxd.backends.local import fit_prompt

    cfg = decode({"inline": INLINE}).inline
    engine = InlineEngine(cfg, generate=None)  # type: ignore[arg-type]
    ctx = engine.context_for(text, len(text), URI, "python")
    ctx.header = engine._header(ctx, ())
    req = engine._request(ctx)
    ids, max_tokens = fit_prompt(lm, req, cfg.context_tokens, req.max_tokens)
    tok = lm.tokenizer
    healed = ""
    if heal:
        ids, healed = heal_point(tok, ids)
    processors = [Healer(healed, vocabulary(tok))] if healed else None
    out = [
        r.token
        for r in stream_generate(
            lm.model,
            tok,
            ids,
            max_tokens=max_tokens,
            sampler=make_sampler(0.0),
            logits_processors=processors,
        )
    ]
    ended = bool(out) and out[-1] in tok.eos_token_ids
    answer = tok.decode([t for t in out if t not in tok.eos_token_ids])
    assert answer.startswith(healed)
    done = SimpleNamespace(text=answer[len(healed) :], finish_reason="stop" if ended else "length")
    return cleaned(done, ctx, cfg.whole_lines)[0]


# A lone greedy request speculates (models/speculative.py); "off": the batch generator.
@pytest.mark.parametrize("speculative", ["auto", "off"])
# Mid-word, and at a line start after Enter (the editor indented the new line, or not).
@pytest.mark.parametrize(
    "text",
    [
        "def main():\n    status_cod",
        "import collecti",
        "for item in ite",
        "def main():\n    x = 1\n",
        "def main():\n    x = 1\n    ",
    ],
)
async def test_a_cursor_mid_word_is_answered_from_the_healed_prompt(
    tmp_path: Path, tiny_model: Path, tiny_lm: Any, text: str, speculative: str
) -> None:
    healed = expected_item(tiny_lm, text, heal=True)
    assert healed != expected_item(tiny_lm, text, heal=False)  # so this test can fail
    lines = [f"{k} = {v!r}".replace("False", "false") for k, v in INLINE.items()]
    cfg = write_config(
        tmp_path / "heal.toml",
        f'[local]\nmodel = "{tiny_model}"\nspeculative = "{speculative}"\n[inline]\n'
        + "\n".join(lines),
    )
    async with daemon(cfg) as s:
        open_doc(s, text)
        line = text.count("\n")
        result = await inline(s, line, len(text.split("\n")[-1]), kind=2)
        assert [item.insert_text for item in result.items] == ([healed] if healed else [])


def test_the_vocabulary_is_built_once_and_before_the_model_is_ready(tiny_model: Path) -> None:
    # The first requests after "ready" each built it on their own thread, ~0.2 s mostly holding
    # the GIL: the event loop stalled ~100 ms at a time and an inline answer at max_ms 400
    # reached the editor after 467-518 ms (attack, session 25).
    import threading

    import mlx_lm

    from mlxd.models import healing
    from mlxd.models.loader import load_model

    _, tok = mlx_lm.load(str(tiny_model))  # a tokenizer no one has built a vocabulary for
    gate = threading.Barrier(4)
    got: list[object] = []

    def first_request() -> None:
        gate.wait()
        got.append(vocabulary(tok))

    threads = [threading.Thread(target=first_request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(v is got[0] for v in got)
    lm = load_model(str(tiny_model))
    assert lm.tokenizer._tokenizer in healing._VOCABS  # built by the loader
