"""A request waiting in block_by when an edit elsewhere in the document (didChange, not typing
along) drops its rest job as stale answers nothing: it answered before, for text that was gone
(helper-95, session 30)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlxd.config import InlineConfig
from mlxd.inline.engine import InlineEngine
from mlxd.prompts import CursorContext
from mlxd.types import Outcome, Request

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

X = "file:///proj/src/x.py"
HEADER = "def add(a, b):"
FIRST = "\n    if a:\n        ret"


def outcome(text: str, finish: str = "stop", tokens: int = 4) -> Outcome:
    return Outcome(text, "local", "tiny", finish, 10, tokens, [], None, 1.0)


async def test_an_edit_that_drops_the_rest_job_leaves_the_waiting_request_nothing_to_show() -> None:
    hold = asyncio.Event()
    bg: list[Request] = []

    async def model(request: Request, ctx: CursorContext) -> Any:
        await asyncio.sleep(0)
        return outcome(FIRST, tokens=5)

    async def runner(request: Request, ctx: CursorContext) -> Any:
        bg.append(request)
        await hold.wait()
        return outcome("urn b")

    eng = InlineEngine(
        InlineConfig(max_ms=2000), model, background=runner, local_first=lambda u: True
    )  # type: ignore[arg-type]
    a = asyncio.ensure_future(eng.complete(HEADER, 0, len(HEADER), uri=X, language="python"))
    end = time.monotonic() + 5
    while not bg:
        assert time.monotonic() < end
        await asyncio.sleep(0.005)
    t0 = time.monotonic()
    new_text = "import os\n" + HEADER  # an edit above: the request's position is stale
    eng.changed(X, "python", new_text, (0, 0, "import os\n"))
    assert eng.ahead._jobs.get(X) is None  # the rest job was dropped as stale
    got = [i.insert_text for i in await a]
    hold.set()
    print("answered", got, "after", time.monotonic() - t0)
    assert got == [], got  # the text it was for is gone
