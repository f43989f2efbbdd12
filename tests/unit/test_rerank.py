"""Reranking where the cursor rests at a block start (inline/rerank.py): the greedy answer and
sampled ones, the one that best leads into the code after the cursor kept. The engine's side,
with async stand-ins for the background runner and the scorer (the scores' math on a real
model: test_scoring.py; the wiring through a real daemon: tests/e2e/test_cursor_warm.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from mlxd.config import InlineConfig
from mlxd.inline import ahead, rerank
from mlxd.inline.engine import InlineEngine
from mlxd.prompts import CursorContext
from mlxd.types import Request

URI = "file:///proj/app.py"
TEXT = "def double(a):\nprint(double(2))\n"
AT = (0, 14)  # the end of the header: a block start
GREEDY = "\n    return 1"
SAMPLES = ["\n    return a * 2", "\n    return 1", "\n    pass", "\n    return a * 2"]


class Stand:
    """The background runner (greedy and sampled generations, warm-ups) and the scorer."""

    def __init__(self, scores: dict[str, float] | None, greedy: str = "") -> None:
        self.greedy = greedy or GREEDY
        self.scores = scores  # None: the model gives no scores (a FIM model)
        self.generations: list[float] = []  # each generation's temperature
        self.scored: list[list[str]] = []
        self.release_scores = asyncio.Event()
        self.release_scores.set()
        self.scoring = asyncio.Event()
        self._samples = iter(SAMPLES)

    async def background(self, request: Request, ctx: CursorContext) -> Any:
        assert request.priority == "background"
        if request.max_tokens == 0:
            return "warm"
        self.generations.append(request.temperature)
        await asyncio.sleep(0)
        return self.greedy if request.temperature == 0 else next(self._samples)

    async def score(
        self, request: Request, ctx: CursorContext, texts: Sequence[str]
    ) -> list[float] | None:
        assert request.deadline is None and request.temperature == 0
        if not texts:  # asked whether the model gives scores at all
            return None if self.scores is None else []
        self.scored.append(list(texts))
        self.scoring.set()
        await self.release_scores.wait()
        if self.scores is None:
            return None
        if not self.scores:
            raise RuntimeError("the model was unloaded meanwhile")
        return [self.scores.get(t.split("\nprint")[0], -100.0) for t in texts]

    async def generate(self, request: Request, ctx: CursorContext) -> str:
        raise AssertionError("a resting cursor's suggestion is made in the background")


def make(stand: Stand, **cfg: Any) -> InlineEngine:
    config = InlineConfig(**{"rerank": True, **cfg})
    return InlineEngine(config, stand.generate, background=stand.background, score=stand.score)


async def rest(eng: InlineEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "CURSOR_SETTLE_S", 0)
    eng.opened(URI, "python", TEXT)
    eng.moved(URI, "python", TEXT, AT)


async def item(eng: InlineEngine) -> list[str]:
    got = await eng.complete(TEXT, *AT, uri=URI, language="python")
    return [i.insert_text for i in got]


async def settled(eng: InlineEngine, check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the resting job did not get there")


async def test_the_candidate_that_best_leads_into_the_suffix_is_kept(monkeypatch) -> None:
    stand = Stand({"\n    return a * 2": -3.0, GREEDY: -5.0, "\n    pass": -9.0})
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: eng.stats.reranked == 1)
    assert await item(eng) == ["\n    return a * 2"]
    # The greedy one and rerank.SAMPLES sampled ones, side by side; each distinct text scored
    # once, followed by the suffix's first lines.
    assert stand.generations == [0.0] + [rerank.TEMPERATURE] * rerank.SAMPLES
    assert stand.scored == [
        [t + "\nprint(double(2))\n" for t in (GREEDY, "\n    return a * 2", "\n    pass")]
    ]
    assert (eng.stats.reranked, eng.stats.rerank_changed) == (1, 1)


async def test_the_greedy_answer_stays_when_it_scores_best(monkeypatch) -> None:
    stand = Stand({GREEDY: -1.0, "\n    return a * 2": -3.0})
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: eng.stats.reranked == 1)
    assert await item(eng) == [GREEDY]
    assert eng.stats.rerank_changed == 0


async def test_a_model_without_scores_samples_nothing(monkeypatch) -> None:
    stand = Stand(None)  # a FIM model: it sees the suffix already
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: eng.snapshot()["cursor_items"] == 1)
    assert await item(eng) == [GREEDY]
    assert (stand.generations, stand.scored, eng.stats.reranked) == ([0.0], [], 0)


async def test_scores_that_fail_leave_the_greedy_answer(monkeypatch) -> None:
    stand = Stand({})  # the scorer raises (the model was unloaded meanwhile)
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: bool(stand.scored) and eng.snapshot()["cursor_items"] == 1)
    assert await item(eng) == [GREEDY]
    assert eng.stats.reranked == 0


async def test_a_greedy_answer_with_nothing_to_show_is_not_reranked(monkeypatch) -> None:
    # Its line goes on at once (rest.py) for a request that waits for it, as without rerank.
    stand = Stand({"\n    return a * 2": 0.0}, greedy="\nprint(1)")  # leaves the block
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: bool(stand.generations))
    await asyncio.sleep(0.05)
    assert (stand.generations, stand.scored) == ([0.0], [])


async def test_off_by_default_one_greedy_generation_and_no_scores(monkeypatch) -> None:
    stand = Stand({"\n    return a * 2": 0.0})
    eng = InlineEngine(
        InlineConfig(), stand.generate, background=stand.background, score=stand.score
    )
    await rest(eng, monkeypatch)
    await settled(eng, lambda: eng.snapshot()["cursor_items"] == 1)
    assert await item(eng) == [GREEDY]
    assert (stand.generations, stand.scored) == ([0.0], [])


async def test_a_request_while_candidates_are_scored_gets_the_greedy_one_at_once(
    monkeypatch,
) -> None:
    stand = Stand({"\n    return a * 2": -3.0, GREEDY: -5.0})
    stand.release_scores.clear()  # the scores take their time
    eng = make(stand)
    await rest(eng, monkeypatch)
    await asyncio.wait_for(stand.scoring.wait(), 5)
    # It joins the resting job, which stored its greedy answer before scoring: no wait, and a
    # pregenerated item (work ahead after it).
    assert await asyncio.wait_for(item(eng), 1) == [GREEDY]
    assert eng.snapshot()["ahead_hits"] == 1
    stand.release_scores.set()
    await asyncio.sleep(0.05)
    # Shown, it is not replaced under the user (typing along it stays a cache hit).
    assert await item(eng) == [GREEDY]
    assert eng.stats.reranked == 0


async def test_not_at_a_block_start_nothing_is_sampled(monkeypatch) -> None:
    stand = Stand({"\n    return a * 2": 0.0})
    eng = make(stand)
    monkeypatch.setattr(ahead, "CURSOR_SETTLE_S", 0)
    eng.opened(URI, "python", TEXT)
    eng.moved(URI, "python", TEXT, (1, 0))  # a line start: one line is asked for
    await settled(eng, lambda: bool(stand.generations))
    await asyncio.sleep(0.05)
    assert (stand.generations, stand.scored) == ([0.0], [])


async def test_a_winning_sample_its_cap_cut_goes_on_like_the_greedy_answer(monkeypatch) -> None:
    from mlxd.inline.jobs import Continued

    class Going(Stand):
        async def background(self, request: Request, ctx: CursorContext) -> Any:
            if request.assistant_prefix:  # the rest of the block, from the kept text
                self.went_on_from = request.assistant_prefix
                return Continued("\n    return b", "stop", 3)
            return await super().background(request, ctx)

    stand = Going({"\n    return a * 2": -1.0, GREEDY: -5.0})
    stand._samples = iter([Continued("\n    return a * 2\n    ret", "length", 32)] * 4)
    eng = make(stand)
    await rest(eng, monkeypatch)
    await settled(eng, lambda: eng.snapshot()["rest_stored"] == 1)
    assert stand.went_on_from == "\n    return a * 2"
    assert await item(eng) == ["\n    return a * 2\n    return b"]


async def test_a_reload_that_clears_the_cache_meanwhile_leaves_the_job_to_answer(
    monkeypatch,
) -> None:
    # Only inline.max_ms changed: the cached greedy answer goes, the job goes on (documents.py),
    # and a request there waits for what it stores next rather than asking the model again.
    from mlxd.config import Config

    stand = Stand({"\n    return a * 2": -3.0, GREEDY: -5.0})
    stand.release_scores.clear()
    eng = make(stand)
    await rest(eng, monkeypatch)
    await asyncio.wait_for(stand.scoring.wait(), 5)
    old = Config(inline=eng.cfg)
    eng.reconfigured(old, Config(inline=msgspec.structs.replace(eng.cfg, max_ms=1400)))
    asked = asyncio.ensure_future(item(eng))
    await asyncio.sleep(0.05)
    assert not asked.done()  # waiting for the job, not a fresh generation
    stand.release_scores.set()
    assert await asyncio.wait_for(asked, 2) == ["\n    return a * 2"]
