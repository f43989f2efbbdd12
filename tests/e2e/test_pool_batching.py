"""The local model pool and continuous batching, in-process with real MLX and tiny models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlxd.backends.local import LocalBackend
from mlxd.errors import ModelError
from mlxd.models import Job, ModelPool
from mlxd.models.tiny import make_tiny_model
from mlxd.types import Delta, Done, Message, Request


@pytest.fixture
async def pool() -> AsyncIterator[ModelPool]:
    p = ModelPool(memory_limit_gb=4)
    yield p
    p.close()


def chat(text: str, max_tokens: int = 16, **kw) -> Request:
    return Request(kind="chat", messages=[Message("user", text)], max_tokens=max_tokens, **kw)


async def run(backend: LocalBackend, req: Request) -> tuple[str, Done]:
    text = ""
    async for ev in backend.stream(req):
        if isinstance(ev, Delta):
            text += ev.text
        else:
            return text, ev
    raise AssertionError("no Done")


async def test_concurrent_requests_share_one_load(pool: ModelPool, tiny_model: Path) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    results = await asyncio.gather(*(run(b, chat(f"q{i}", 4)) for i in range(5)))
    assert pool.loads == 1
    assert all(done.completion_tokens >= 1 for _, done in results)


async def test_failed_load_reaches_every_waiter_and_the_next_request_retries(
    pool: ModelPool, tmp_path: Path
) -> None:
    target = tmp_path / "later"
    b = LocalBackend("local", str(target), pool)
    errors = await asyncio.gather(*(run(b, chat("x")) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(e, ModelError) for e in errors)
    assert len({str(e) for e in errors}) == 1 and str(target) in str(errors[0])
    make_tiny_model(target)  # now it exists: the next request loads it
    text, done = await run(b, chat("x", 3))
    assert done.completion_tokens >= 1 and pool.loads == 1


async def two_models_of_one_size(tmp_path: Path) -> tuple[Path, Path, int]:
    """Two different tiny models of the same shape, and the bytes one takes once loaded."""
    a = make_tiny_model(tmp_path / "a", hidden=256, intermediate=512, seed=1)
    b = make_tiny_model(tmp_path / "b", hidden=256, intermediate=512, seed=2)
    probe = ModelPool(memory_limit_gb=4)
    try:
        await run(LocalBackend("a", str(a), probe), chat("x", 1))
        return a, b, probe.entries[str(a)].nbytes
    finally:
        probe.close()


async def test_lru_eviction_respects_the_budget(tmp_path: Path) -> None:
    a, b, size = await two_models_of_one_size(tmp_path)

    pool = ModelPool(memory_limit_gb=1.5 * size / 2**30)  # room for one, not two
    try:
        ba, bb = LocalBackend("a", str(a), pool), LocalBackend("b", str(b), pool)
        await run(ba, chat("x", 2))
        await run(bb, chat("x", 2))
        assert list(pool.entries) == [str(b)]  # a was evicted to make room
        assert sum(e.nbytes for e in pool.entries.values()) <= pool.budget_bytes
    finally:
        pool.close()


async def test_eviction_never_takes_a_model_that_is_generating(tmp_path: Path) -> None:
    a, b, size = await two_models_of_one_size(tmp_path)

    pool = ModelPool(memory_limit_gb=1.5 * size / 2**30)
    try:
        ba, bb = LocalBackend("a", str(a), pool), LocalBackend("b", str(b), pool)
        stream = ba.stream(chat("long", 2000))
        assert isinstance(await anext(stream), Delta)
        assert pool.entries[str(a)].busy  # a is generating
        with pytest.raises(ModelError, match="generating"):
            await run(bb, chat("x", 2))
        assert str(a) in pool.entries
        await stream.aclose()
    finally:
        pool.close()


async def test_a_model_over_the_budget_is_a_clear_error(tiny_model: Path) -> None:
    pool = ModelPool(memory_limit_gb=1e-6)
    try:
        with pytest.raises(ModelError, match="memory budget"):
            await run(LocalBackend("local", str(tiny_model), pool), chat("x"))
    finally:
        pool.close()


async def test_idle_models_are_unloaded(tiny_model: Path) -> None:
    events: list[tuple[str, str]] = []
    pool = ModelPool(idle_unload_s=0.3, on_event=lambda s, e, m: events.append((s, e)))
    try:
        b = LocalBackend("local", str(tiny_model), pool)
        await run(b, chat("x", 2))
        assert b.loaded
        for _ in range(100):
            if (str(tiny_model), "unloaded") in events:
                break
            await asyncio.sleep(0.05)
        assert (str(tiny_model), "unloaded") in events
        assert not b.loaded
        await run(b, chat("x", 2))  # and it comes back on the next use
        assert pool.loads == 2
    finally:
        pool.close()


async def test_kv_cache_reuse_gives_the_same_greedy_output(
    pool: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    engine_of = lambda: pool.entries[str(tiny_model)].engine  # noqa: E731
    long = "tell me about " * 40
    cold, _ = await run(b, chat(long, 20))
    engine = engine_of()
    before = engine.cached_tokens
    warm, _ = await run(b, chat(long, 20))
    assert engine.cached_tokens - before > 100  # the second prompt came from the cache
    assert warm == cold
    # a follow-up turn reuses the shared prefix and still matches a cold run of itself
    follow = Request(
        kind="chat",
        messages=[Message("user", long), Message("assistant", cold), Message("user", "more")],
        max_tokens=12,
    )
    warm_follow, _ = await run(b, follow)
    fresh = ModelPool()
    try:
        cold_follow, _ = await run(LocalBackend("local", str(tiny_model), fresh), follow)
    finally:
        fresh.close()
    assert warm_follow == cold_follow


async def test_a_cancelled_request_leaves_its_cache_reusable(
    pool: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    prompt = "cancel me please " * 30
    stream = b.stream(chat(prompt, 500))
    got = 0
    async for ev in stream:
        got += isinstance(ev, Delta)
        if got == 5:
            break
    await stream.aclose()
    engine = pool.entries[str(tiny_model)].engine
    before = engine.cached_tokens
    await run(b, chat(prompt, 3))
    assert engine.cached_tokens - before >= 100


async def test_batched_requests_each_get_the_greedy_output_they_get_alone(
    pool: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    prompts = ["alpha", "beta gamma", "delta epsilon zeta", "eta"]
    alone = [await run(b, chat(p, 24)) for p in prompts]
    # fresh pool so nothing comes from the KV cache either
    fresh = ModelPool()
    try:
        fb = LocalBackend("local", str(tiny_model), fresh)
        together = await asyncio.gather(*(run(fb, chat(p, 24)) for p in prompts))
        engine = fresh.entries[str(tiny_model)].engine
        assert engine.generations == 4
    finally:
        fresh.close()
    assert [t for t, _ in together] == [t for t, _ in alone]


async def test_cancellation_removes_a_request_from_the_batch_at_once(
    pool: ModelPool, tiny_model: Path
) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    long_stream = b.stream(chat("keep going", 5000))
    assert isinstance(await anext(long_stream), Delta)
    engine = pool.entries[str(tiny_model)].engine
    other = asyncio.ensure_future(run(b, chat("short", 8)))
    await long_stream.aclose()  # cancel the long one mid-batch
    text, done = await other
    assert done.completion_tokens >= 1
    for _ in range(100):
        if engine.active == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.active == 0  # nothing left decoding for the cancelled request


async def test_stop_sequences_and_max_time(pool: ModelPool, tiny_model: Path) -> None:
    b = LocalBackend("local", str(tiny_model), pool)
    full, _ = await run(b, chat("stops", 40))
    stop = full[6:10]
    cut, done = await run(b, chat("stops", 40, stop=[stop]))
    assert cut == full[: full.index(stop)] and done.finish_reason == "stop"
    _, timed = await run(b, chat("timed", 100000, max_time_s=0.2))
    assert timed.finish_reason == "length" and timed.completion_tokens < 100000


async def test_a_stop_token_ends_generation_in_the_engine_and_is_counted(
    pool: ModelPool, tiny_model: Path
) -> None:
    """A FIM template's end tokens are real stop tokens (issue #13): the batch engine ends the
    answer on one like on EOS, keeps it out of the text and counts it in the usage. Every id is
    a stop token here, so the first greedy token is one, whichever it is."""
    entry = await pool.acquire(str(tiny_model), "auto")
    tok = entry.engine.lm.tokenizer
    loop = asyncio.get_running_loop()

    async def generate(stop_tokens: frozenset[int]) -> tuple[str, Done]:
        queue: asyncio.Queue = asyncio.Queue()
        job = Job(
            tokens=list(tok.encode("def add(a, b):", add_special_tokens=False)),
            max_tokens=8,
            temperature=0.0,
            stop=[],
            stop_tokens=stop_tokens,
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
        )
        entry.engine.submit(job)
        text = ""
        while not isinstance(item := await queue.get(), Done):
            assert not isinstance(item, BaseException), item
            text += item.text
        return text, item

    free_text, free = await generate(frozenset())
    assert (free.finish_reason, free.completion_tokens) == ("length", 8) and free_text
    text, done = await generate(frozenset(range(len(tok.get_vocab()))))
    assert (text, done.finish_reason, done.completion_tokens) == ("", "stop", 1)


def test_the_fim_templates_end_tokens_become_stop_token_ids(tiny_model: Path) -> None:
    """The local backend maps its tokenizer's FIM template end tokens to ids for the engine:
    a StarCoder-style vocabulary stops on <|endoftext|>, <file_sep> and the FIM markers, and
    a completion on every control token its prompt does not hold (<|im_start|> came out as
    ghost text; attack, session 25); reasoning tags are the answer filter's to split off."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from transformers import PreTrainedTokenizerFast

    from mlxd.backends.local_prompt import end_tokens as _end_tokens
    from mlxd.backends.local_prompt import stop_ids
    from mlxd.prompts import STARCODER

    plain = PreTrainedTokenizerFast(tokenizer_file=str(tiny_model / "tokenizer.json"))
    assert _end_tokens(TokenizerWrapper(plain)) == frozenset()
    controls = frozenset(
        plain.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    )
    assert stop_ids(TokenizerWrapper(plain), [5, 6, 7]) == controls
    fim = PreTrainedTokenizerFast(tokenizer_file=str(tiny_model / "tokenizer.json"))
    fim.add_special_tokens(
        {
            "additional_special_tokens": [
                "<fim_prefix>",
                "<fim_suffix>",
                "<fim_middle>",
                "<file_sep>",
            ]
        }
    )
    ids = _end_tokens(TokenizerWrapper(fim))
    assert ids == frozenset(fim.convert_tokens_to_ids(t) for t in STARCODER.eot_tokens)
    assert len(ids) == 5
    fim.add_special_tokens({"additional_special_tokens": ["<think>", "</think>", "<file_sep>"]})
    wrapped = TokenizerWrapper(fim)
    middle = fim.convert_tokens_to_ids("<fim_middle>")
    assert stop_ids(wrapped, [5, 6, 7]) == ids | controls | {middle}
    # A prompt that holds a control token (a document about ChatML) may be completed with it;
    # the FIM end tokens stay ends even where the FIM prompt holds them.
    im_start = fim.convert_tokens_to_ids("<|im_start|>")
    assert stop_ids(wrapped, [im_start, *ids, middle]) == ids | controls - {im_start}


def test_every_control_token_of_the_embedded_model_ends_a_completion() -> None:
    # SmolLM2's vocabulary begins with 17 control tokens (GGUF type 3): its only EOS is
    # <|im_end|>; <|endoftext|>, <|im_start|>, <file_sep>, <jupyter_code>... came out as text.
    from mlxd.backends.local_prompt import stop_ids
    from mlxd.models.loader import load_model

    tok = load_model("smollm2-135m").tokenizer
    ids = stop_ids(tok, tok.encode("def f(x):\n    return x\n"))
    assert ids == frozenset(range(17))
    texts = {tok.decode([i]) for i in ids}
    assert {"<|endoftext|>", "<|im_start|>", "<file_sep>", "<jupyter_code>"} <= texts
