"""Background work in the batch engine (issue #17 item 6), in-process with real MLX and the tiny
model: an interactive request preempts background work within one scheduler step (prefill runs
in chunks), a prefill-only background request warms the KV cache for the next request, a
cancelled background request frees its slot within one step, and a preempted greedy answer is
the answer it gets alone. The bounds are step counts the engine keeps, not wall-clock times."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mlxd.backends.local import LocalBackend
from mlxd.models import Job, ModelPool
from mlxd.models.batching import BatchEngine
from mlxd.types import Delta, Done, Request

LONG = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(160))


@pytest.fixture(params=["auto", "off"], ids=["speculating", "batched"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[ModelPool]:
    """A pool whose lone greedy job speculates (its own code path) or always batches."""
    p = ModelPool(memory_limit_gb=4, speculative=request.param)
    yield p
    p.close()


class Run:
    """One job submitted straight to the engine, its events collected as they come."""

    def __init__(self, engine: BatchEngine, tokens: list[int], max_tokens: int, **kw: Any):
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.text = ""
        self.done: Done | None = None
        self.job = Job(
            tokens=tokens,
            max_tokens=max_tokens,
            temperature=kw.pop("temperature", 0.0),
            stop=[],
            emit=lambda item: loop.call_soon_threadsafe(self.queue.put_nowait, item),
            **kw,
        )
        engine.submit(self.job)

    async def next(self) -> Any:
        item = await asyncio.wait_for(self.queue.get(), 120)
        assert not isinstance(item, BaseException), item
        if isinstance(item, Delta):
            self.text += item.text
        else:
            self.done = item
        return item

    async def finish(self) -> Done:
        while self.done is None:
            await self.next()
        return self.done


async def until(predicate: Any, what: str) -> None:
    for _ in range(12000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def engine_and_tokens(pool: ModelPool, spec: Path) -> tuple[BatchEngine, Any]:
    entry = await pool.acquire(str(spec), "auto")
    tok = entry.engine.lm.tokenizer
    return entry.engine, lambda text: list(tok.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "sampled"])
async def test_an_interactive_request_waits_at_most_one_background_step(
    pool: ModelPool, tiny_model: Path, phase: str, temperature: float
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    prompt = encode(LONG) if phase == "prefill" else encode("def g(x):\n")
    assert phase != "prefill" or len(prompt) > 20 * BatchEngine.PREFILL_STEP
    bg = Run(engine, prompt, 400, background=True, temperature=temperature)
    if phase == "decode":
        await bg.next()  # it decodes
    else:
        await until(lambda: engine.background_steps >= 2, "two background prefill chunks")
    fg = Run(engine, encode("print(1)"), 4)
    await fg.next()  # its first token (or the end)
    assert fg.job.waited is not None and fg.job.waited <= 1
    assert bg.job.generated < 400  # the background answer is still under way
    await fg.finish()
    assert (await bg.finish()).completion_tokens == 400  # resumed and finished after it
    assert engine.preempted >= 1


async def test_a_job_knows_when_the_engine_took_it_after_the_chunk_in_flight(
    pool: ModelPool, tiny_model: Path
) -> None:
    # Issue #16: the local backend measures prefill speed from `started`, not from the submit:
    # the wait for a warm-up's chunk in flight is not this prompt's prefill.
    engine, encode = await engine_and_tokens(pool, tiny_model)
    bg = Run(engine, encode(LONG), 0, background=True)
    await until(lambda: engine.background_steps >= 1, "a background prefill chunk")
    try:
        submitted = time.monotonic()
        fg = Run(engine, encode("print(1)"), 2)
        await fg.next()
        first = time.monotonic()
        assert fg.job.started is not None and submitted <= fg.job.started <= first
        await fg.finish()
    finally:
        bg.job.cancelled.set()


async def test_a_background_prefill_only_request_warms_the_cache_for_the_next_request(
    pool: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    warm = Request(kind="complete", prefix=LONG, max_tokens=0, priority="background")
    events = [ev async for ev in b.stream(warm)]
    assert len(events) == 1 and isinstance(events[0], Done)
    done = events[0]
    assert (done.finish_reason, done.completion_tokens) == ("length", 0)
    engine = pool.entries[str(tiny_model)].engine
    before = engine.cached_tokens
    ask = Request(kind="complete", prefix=LONG + "def next_one(", max_tokens=4)
    assert [ev async for ev in b.stream(ask)][-1].completion_tokens == 4
    assert engine.cached_tokens - before >= done.prompt_tokens - 1  # all but a boundary token


@pytest.mark.parametrize("max_tokens", [0, 2000], ids=["prefill-only", "decoding"])
async def test_cancelling_a_background_request_frees_its_slot_within_one_step(
    pool: ModelPool, tiny_model: Path, max_tokens: int
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    req = Request(kind="complete", prefix=LONG, max_tokens=max_tokens, priority="background")

    async def consume() -> None:
        async for _ in b.stream(req):
            pass

    task = asyncio.ensure_future(consume())
    await until(lambda: str(tiny_model) in pool.entries, "the model loaded")
    engine = pool.entries[str(tiny_model)].engine
    await until(lambda: engine.background_steps >= 2, "two background steps")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel = engine.background_steps
    await until(lambda: engine.active == 0, "the slot freed")
    assert engine.background_steps - at_cancel <= 1


async def test_a_preempted_greedy_answer_is_the_answer_it_gets_alone(
    pool: ModelPool, tiny_model: Path
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    prompt, other = encode("def add(a, b):\n"), encode("class Point:\n")
    alone = Run(engine, prompt, 48, background=True)
    await alone.finish()
    fg_alone = Run(engine, other, 12)
    await fg_alone.finish()
    engine.cache.trim_to(n_sequences=0)  # nothing from the KV cache: the same work again

    bg = Run(engine, prompt, 48, background=True)
    for _ in range(5):
        await bg.next()
    fg = Run(engine, other, 12)
    await fg.finish()
    await bg.finish()
    assert engine.preempted >= 1
    assert (bg.text, fg.text) == (alone.text, fg_alone.text)


async def test_a_prefill_cut_by_its_deadline_finishes_in_the_background(
    pool: ModelPool, tiny_model: Path
) -> None:
    """Answering nothing by the bound must not waste the prefill: the next request with the
    same prompt (the next keystroke) finds all of it in the KV cache."""
    b = LocalBackend("local", str(tiny_model), pool)
    await b.ensure_loaded()
    engine = pool.entries[str(tiny_model)].engine
    req = Request(kind="complete", prefix=LONG, max_tokens=4, deadline=time.monotonic())
    got: list[Any] = []

    async def consume() -> None:
        async for ev in b.stream(req):
            got.append(ev)

    task = asyncio.ensure_future(consume())
    await until(lambda: engine.generations == 1, "the request reached the model")
    task.cancel()  # as the router does at the bound
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == []  # cut during its prefill
    assert b.speed.samples == 1  # which still measured the prefill speed
    await until(lambda: engine.active == 0, "the background prefill finished")
    before = engine.cached_tokens
    done = [ev async for ev in b.stream(replace(req, deadline=None))][-1]
    assert engine.cached_tokens - before == done.prompt_tokens - 1  # all but the last token


async def test_an_interactive_request_reuses_what_a_background_prefill_made_so_far(
    pool: ModelPool, tiny_model: Path
) -> None:
    """A warm-up cut short by an interactive request still serves it: the KV that the
    background prefill made before the request arrived is reused, and the warm-up finishes
    after it."""
    engine, encode = await engine_and_tokens(pool, tiny_model)
    prompt = encode(LONG)
    warm = Run(engine, prompt, 0, background=True)
    await until(lambda: engine.background_steps >= 3, "three background prefill chunks")
    fg = Run(engine, prompt + encode("\ndef next_one("), 2)
    await fg.finish()
    assert fg.job.reused >= 3 * BatchEngine.PREFILL_STEP
    assert (await warm.finish()).prompt_tokens == len(prompt)


async def test_an_interactive_prefill_only_request_goes_before_a_background_one(
    pool: ModelPool, tiny_model: Path
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    long = encode(LONG)
    bg = Run(engine, long, 0, background=True)
    await until(lambda: engine.background_steps >= 2, "two background prefill chunks")
    fg = Run(engine, encode("class Point:\n    x: int\n"), 0)
    assert (await fg.finish()).completion_tokens == 0
    assert bg.job.prefilled < len(long)  # still under way: the interactive one went first
    assert (await bg.finish()).prompt_tokens == len(long)
