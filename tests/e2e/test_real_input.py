"""Issue 14, on the real daemon: the text users get is exactly what the model generated.

The tiny model's greedy tokens are computed here, in the test process, with mlx-lm's own
generator and the daemon's own prompt builder, and the daemon's answer must be their decoded
text: stream pieces, final text and fallback continuations alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlxd.backends.base import Message, Request
from mlxd.config import InlineConfig

from ..conftest import chat_params, daemon
from ..fakes.providers import FakeProvider, Reply
from ..test_router import ENV, KEY, cloud_then_local

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tiny_lm(tiny_model: Path) -> Any:
    import mlx_lm

    return mlx_lm.load(str(tiny_model))


def greedy_text(tiny_lm: Any, req: Request, n: int) -> str:
    """What the tiny model generates greedily for `req`: its tokens decoded in one piece."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from mlxd.backends.local import _prompt_tokens

    model, tok = tiny_lm
    ids = _prompt_tokens(tok, req, InlineConfig())
    out = [
        r.token for r in stream_generate(model, tok, ids, max_tokens=n, sampler=make_sampler(0.0))
    ]
    return tok.decode([t for t in out if t not in tok.eos_token_ids])


def chat_req(text: str, prefix: str = "") -> Request:
    return Request(kind="chat", messages=[Message("user", text)], assistant_prefix=prefix)


# --- item 3: the first space --------------------------------------------------------------
@pytest.mark.parametrize("question", ["Paris", "hello", "return a +"])
async def test_local_chat_is_exactly_the_decoded_tokens(
    tiny_config: Path, tiny_lm: Any, question: str
) -> None:
    expected = greedy_text(tiny_lm, chat_req(question), 6)
    assert expected.startswith(" ")  # the tiny model's answers start with a space
    async with daemon(tiny_config) as s:
        r = await s.request("mlxd/chat", chat_params(question, token="t", maxTokens=6))
        assert r.text == expected
        assert "".join(s.deltas("t")) == expected


async def test_local_complete_is_exactly_the_decoded_tokens(
    tiny_config: Path, tiny_lm: Any
) -> None:
    prefix = "The capital of France is"
    req = Request(kind="complete", prefix=prefix)
    expected = greedy_text(tiny_lm, req, 5)
    async with daemon(tiny_config) as s:
        r = await s.request(
            "mlxd/complete", {"prefix": prefix, "maxTokens": 5, "partialResultToken": "c"}
        )
        assert r.text == expected.rstrip("\ufffd")
        assert "".join(s.deltas("c")) == r.text


async def test_a_local_continuation_of_a_cut_cloud_answer_keeps_its_space(
    tmp_path: Path, tiny_model: Path, tiny_lm: Any
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        cfg = cloud_then_local(tmp_path, tiny_model, fake.openai_url)
        fake.enqueue(Reply.cut(after=3))  # "Hello", ",", " world"
        expected = greedy_text(tiny_lm, chat_req("hello", "Hello, world"), 5)
        assert expected.startswith(" ")
        async with daemon(cfg, env=ENV) as s:
            r = await s.request("mlxd/chat", chat_params("hello", token="t", maxTokens=8))
            assert r.text == "Hello, world" + expected
            assert "".join(s.deltas("t")) == r.text
