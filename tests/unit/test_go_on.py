"""types.GoOn and the local backend's hand-over (backends/go_on.py): when an answer's
generation may go on past the answer, and what it becomes then. No model: the batch engine's
side is a Job and the queue its tokens arrive on."""

from __future__ import annotations

import asyncio
import time

from mlxd.backends.go_on import went_on_with
from mlxd.models import Job
from mlxd.types import Delta, Done, GoOn


def job(deadline: float | None = None) -> Job:
    return Job(
        tokens=[1, 2],
        max_tokens=8,
        temperature=0.0,
        stop=[],
        emit=print,
        deadline=deadline,
        inline=True,
        generated=3,
    )


def go(lines: int = 2) -> GoOn:
    return GoOn(lines=lines, bound_s=1.0, max_tokens=16, text="a)\n")


async def test_a_live_answer_goes_on_as_bounded_background_work() -> None:
    j, g, q = job(time.monotonic() + 5), go(), asyncio.Queue()
    assert went_on_with(j, g, q)
    assert (j.background, j.inline, g.started) == (True, False, True)
    assert j.deadline is not None and j.deadline <= time.monotonic() + 1.0  # its own bound
    assert j.max_tokens == 3 + 16  # what it made, and max_tokens more
    q.put_nowait(Delta("bar"))
    q.put_nowait(Delta(" += 2\n    "))
    await g.wait()
    assert (g.text, g.finish_reason) == ("a)\nbar += 2\n    ", "stop")  # two lines: enough
    assert j.cancelled.is_set()  # stopped there, its KV cache kept by the engine


async def test_the_models_own_end_ends_it() -> None:
    j, g, q = job(), go(), asyncio.Queue()
    assert went_on_with(j, g, q)
    q.put_nowait(Delta("bar"))
    q.put_nowait(Done("stop", 2, 4, "m"))
    await g.wait()
    assert (g.text, g.finish_reason) == ("a)\nbar", "stop")


async def test_nothing_goes_on_for_a_cancelled_request_an_ended_or_cut_job_or_a_stopped_go() -> (
    None
):
    cases = []
    ended = job()
    ended.ended.set()
    cases.append((ended, go()))
    cases.append((job(time.monotonic() - 0.01), go()))  # its deadline passed: a cut answer
    stopped = go()
    stopped.stop()
    cases.append((job(), stopped))
    for j, g in cases:
        assert not went_on_with(j, g, asyncio.Queue())
        assert not j.background and not g.started

    got: list[bool] = []

    async def cancelled() -> None:  # the stream closed because its request was cancelled
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        got.append(went_on_with(job(), go(), asyncio.Queue()))
        await asyncio.sleep(0)

    task = asyncio.ensure_future(cancelled())
    await asyncio.wait([task])
    assert got == [False] and task.cancelled()


async def test_stop_ends_the_generation_and_extend_moves_its_bound() -> None:
    j, g, q = job(), go(), asyncio.Queue()
    assert went_on_with(j, g, q)
    later = time.monotonic() + 30
    g.extend(later)
    assert j.deadline == later
    g.stop()
    await asyncio.wait_for(g.wait(), 1)
    assert j.cancelled.is_set() and g.over
    g.extend(later + 10)  # over: nothing moves
    assert j.deadline == later


async def test_a_go_stopped_before_the_backend_took_it_is_over_and_stops_it_on_take() -> None:
    g = go()
    g.stop()
    assert g.over  # nobody waits for a generation that will not come
    stops: list[int] = []
    g.take(lambda: stops.append(1), lambda until: None)
    assert stops == [1]
