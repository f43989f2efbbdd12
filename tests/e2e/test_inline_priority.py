"""Inline requests before streams in the batch engine (issue #19, models/ranks.py), in-process
with real MLX and the tiny model: a streaming chat pauses while an inline request prefills and
decodes, then resumes with its KV cache, its greedy text the text it gets alone; the pause
ends at the inline request's deadline even while more inline work arrives; a paused chat can
be cancelled. The asserts are on the order in which the engine emitted events, never on how
long something took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mlxd.models import Job, ModelPool
from mlxd.models.batching import BatchEngine
from mlxd.types import Delta, Done, Held
from tests.e2e.test_background_work import engine_and_tokens, until

CHAT = "Write a long story about a robot who learns to paint.\n"
INLINE = "def add(a, b):\n    return"
FAR = 600.0  # an inline deadline no test reaches


@pytest.fixture(params=["auto", "off"], ids=["speculating", "batched"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[ModelPool]:
    """A pool whose lone greedy job speculates (its own code path) or always batches."""
    p = ModelPool(memory_limit_gb=4, speculative=request.param)
    yield p
    p.close()


class Run:
    """One job submitted straight to the engine; what it emits goes to its own text and, with
    its name, to `log`, in the order the MLX thread emitted it."""

    def __init__(self, engine: BatchEngine, name: str, tokens: list[int], n: int, **kw: Any):
        self.loop = asyncio.get_running_loop()
        self.name, self.log = name, kw.pop("log", [])
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.text, self.done, self.held = "", None, []
        self.job = Job(tokens=tokens, max_tokens=n, temperature=0.0, stop=[], emit=self._emit, **kw)
        engine.submit(self.job)

    def _emit(self, item: Any) -> None:  # on the MLX thread
        self.log.append((self.name, type(item).__name__))
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)

    async def next(self) -> Any:
        item = await asyncio.wait_for(self.events.get(), 120)
        assert not isinstance(item, BaseException), item
        if isinstance(item, Delta):
            self.text += item.text
        elif isinstance(item, Held):
            self.held.append(item.seconds)
        else:
            self.done = item
        return item

    def drain(self) -> None:
        """Take in what it emitted so far without waiting."""
        while not self.events.empty():
            item = self.events.get_nowait()
            if isinstance(item, Held):
                self.held.append(item.seconds)
            elif isinstance(item, Delta):
                self.text += item.text

    async def finish(self) -> Done:
        while self.done is None:
            await self.next()
        return self.done

    async def tokens(self, n: int) -> None:
        """Until it has generated `n` more tokens (one Delta may hold several)."""
        target = self.job.generated + n
        while self.job.generated < target and self.done is None:
            await self.next()


def between(log: list[tuple[str, str]], name: str, first: int, last: int) -> list[str]:
    """What `name` emitted between positions first and last of the log."""
    return [kind for who, kind in log[first : last + 1] if who == name]


async def test_a_chat_pauses_while_an_inline_request_runs_and_resumes_losing_nothing(
    pool: ModelPool, tiny_model: Path
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    chat_prompt, inline_prompt = encode(CHAT), encode(INLINE)
    chat_alone = Run(engine, "chat", chat_prompt, 64)
    await chat_alone.finish()
    inline_alone = Run(
        engine, "inline", inline_prompt, 24, inline=True, deadline=time.monotonic() + FAR
    )
    await inline_alone.finish()
    engine.cache.trim_to(n_sequences=0)  # nothing from the KV cache: the same work again

    log: list[tuple[str, str]] = []
    chat = Run(engine, "chat", chat_prompt, 64, log=log)
    await chat.tokens(4)  # it streams
    inline = Run(
        engine, "inline", inline_prompt, 24, inline=True, deadline=time.monotonic() + FAR, log=log
    )
    await inline.finish()
    await chat.finish()
    first = log.index(("inline", "Delta"))
    last = log.index(("inline", "Done"))
    assert between(log, "chat", first, last) == []  # no chat token while the inline one ran
    assert ("chat", "Held") in log[:first]  # the chat was told it waits
    assert chat.job.pauses == 1 and engine.paused == 1
    assert chat.held and chat.held[0] <= FAR  # at most the inline request's bound
    assert (chat.text, inline.text) == (chat_alone.text, inline_alone.text)  # greedy: the same
    assert chat.done == chat_alone.done


async def test_a_chat_that_arrives_during_an_inline_request_starts_after_it(
    pool: ModelPool, tiny_model: Path
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    log: list[tuple[str, str]] = []
    inline = Run(
        engine, "inline", encode(INLINE), 24, inline=True, deadline=time.monotonic() + FAR, log=log
    )
    await inline.next()  # it decodes
    chat = Run(engine, "chat", encode(CHAT), 8, log=log)
    await inline.finish()
    await chat.finish()
    assert log.index(("chat", "Delta")) > log.index(("inline", "Done"))
    assert chat.job.pauses == 1


async def test_a_pause_ends_at_the_inline_deadline_even_while_more_inline_work_arrives(
    pool: ModelPool, tiny_model: Path
) -> None:
    """A stream of inline requests cannot hold a chat back longer than the first one's bound:
    the chat then decodes alongside the newcomer."""
    engine, encode = await engine_and_tokens(pool, tiny_model)
    log: list[tuple[str, str]] = []
    chat = Run(engine, "chat", encode(CHAT), 4000, log=log)
    await chat.tokens(2)
    bound = time.monotonic() + 3.0  # room for a loaded machine to admit it
    first = Run(engine, "inline", encode(INLINE), 4000, inline=True, deadline=bound, log=log)
    await until(lambda: chat.job.pauses == 1, "the chat paused")
    newcomer = Run(
        engine,
        "next",
        encode("x = 1\n"),
        4000,
        inline=True,
        deadline=time.monotonic() + FAR,
        log=log,
    )
    await first.finish()  # cut at its deadline ("length") with what it had
    at = len(log)
    await until(lambda: ("chat", "Delta") in log[at:], "the chat decoding again")
    assert newcomer.done is None  # while the newcomer still runs
    chat.drain()
    assert len(chat.held) == 1 and 0 < chat.held[0] <= 3.0  # told the first one's bound
    newcomer.job.cancelled.set()
    chat.job.cancelled.set()
    await until(lambda: engine.active == 0, "both left")


async def test_a_paused_chat_can_be_cancelled_and_its_kv_cache_is_kept(
    pool: ModelPool, tiny_model: Path
) -> None:
    engine, encode = await engine_and_tokens(pool, tiny_model)
    prompt = encode(CHAT)
    chat = Run(engine, "chat", prompt, 4000)
    await chat.tokens(4)
    inline = Run(
        engine, "inline", encode(INLINE), 4000, inline=True, deadline=time.monotonic() + FAR
    )
    await until(lambda: chat.job.pauses == 1, "the chat paused")
    chat.job.cancelled.set()  # as the router does when the client cancels
    await until(chat.job.ended.is_set, "the paused chat ended")
    assert chat.done is None  # a cancelled job sends nothing more
    assert engine.kept[-1][: len(prompt)] == prompt  # its KV cache kept for reuse
    inline.job.cancelled.set()
    await until(lambda: engine.active == 0, "the inline request left")


async def test_a_chat_pauses_already_while_an_inline_prompt_is_being_built(
    pool: ModelPool, tiny_model: Path
) -> None:
    """The local backend marks an inline request on its way (`expect`) before it tokenizes
    its prompt: streams pause at the mark, and resume when it is dropped."""
    engine, encode = await engine_and_tokens(pool, tiny_model)
    log: list[tuple[str, str]] = []
    chat = Run(engine, "chat", encode(CHAT), 4000, log=log)
    await chat.tokens(2)
    mark = engine.expect(time.monotonic() + FAR)
    await until(lambda: chat.job.pauses == 1, "the chat paused for the mark")
    at = len(log)
    await asyncio.sleep(0.3)  # the chat stays paused while the mark lives
    assert between(log, "chat", at, len(log)) == []
    mark.cancelled.set()  # the inline request's job was submitted, or never will be
    await until(lambda: ("chat", "Delta") in log[at:], "the chat decoding again")
    assert engine.active == 1  # a mark is no work of its own
    chat.job.cancelled.set()
    await until(lambda: engine.active == 0, "the chat left")
