"""Neighbour snippets under the time cap (issue #17 item 4), with the real tokenizer and time fit
of the tiny model (backends/local.py `_fit`, reuse.snippets_first): when the time cap narrows
an inline prompt, the snippets are the first text to go, whole, unless the KV cache holds them;
then they stay whole and the prompt keeps the opening the cache holds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mlxd.backends.local import LocalBackend
from mlxd.models import ModelPool, RecentPrompts
from mlxd.prompts import Snippet, file_header, format_snippets
from mlxd.types import Request

CODE = "".join(f"def step_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(200))
NEIGHBOUR = "".join(f"other_{i} = compute({i})\n" for i in range(15))
PATH = file_header("file:///p/app.py", "python")
HEADER = format_snippets([Snippet("file:///p/other.py", NEIGHBOUR)], "python") + PATH


@pytest.fixture
async def fit(tiny_model: Path) -> AsyncIterator[tuple[LocalBackend, Any]]:
    pool = ModelPool(memory_limit_gb=4)
    backend = LocalBackend("local", str(tiny_model), pool)
    lm = (await pool.acquire(str(tiny_model), "auto")).engine.lm
    # About 200 prompt tokens in the time left (decode too fast to count): a 128-token step.
    backend.speed.prefill_tps, backend.speed.decode_tps = 25.0, 1e6
    yield backend, lm
    pool.close()


def _request() -> Request:
    # 10 s ahead: a loaded machine's delay before the fit still leaves over 128 tokens.
    deadline = time.monotonic() + 10
    return Request(
        kind="inline", prefix=CODE, language="python", header=HEADER, context_tokens=1024,
        max_tokens=8, deadline=deadline,
    )  # fmt: skip


def test_the_header_is_a_sizeable_share_of_the_narrowed_prompt() -> None:
    assert NEIGHBOUR.count("\n") == 15 and len(HEADER) > 3 * len(PATH)


async def test_snippets_the_kv_cache_does_not_hold_go_first_and_whole(fit: Any) -> None:
    backend, lm = fit
    tokens, _ = backend._fit(lm, _request(), 8, RecentPrompts())
    text = lm.tokenizer.decode(tokens)
    assert len(tokens) < 256  # the time cap narrowed it (the full window is ~1024)
    assert text.startswith(PATH)  # no snippet line, not even part of one
    assert CODE.endswith(text[len(PATH) :])  # the rest is all code around the cursor


async def test_snippets_the_kv_cache_holds_stay_whole_and_cost_no_time(fit: Any) -> None:
    backend, lm = fit
    seen = RecentPrompts()
    full, _ = backend._fit(lm, _request(), 8, seen)  # narrowed, without snippets
    held = lm.tokenizer.encode(HEADER + CODE[:200], add_special_tokens=False)
    seen.add(held)  # a warm-up's prompt: the snippets and the file's start
    tokens, _ = backend._fit(lm, _request(), 8, seen)
    text = lm.tokenizer.decode(tokens)
    assert text.startswith(HEADER)  # the opening the KV cache holds, whole
    assert CODE.endswith(text[len(HEADER) :]) and len(text) > len(HEADER)
    # The code around the cursor is what the time cap allows beside the held header.
    new = len(tokens) - seen.cached(tokens)
    assert new <= backend.speed.new_tokens_within(10, 8) and len(full) < 256
