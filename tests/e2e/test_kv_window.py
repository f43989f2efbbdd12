"""The prompt window keeps its start while the user types new lines (issue #17: KV reuse).

The prefix window is cut to `inline.context_tokens` from the cursor back, its start snapped to a
line grid. Each new line at the cursor pushes the start down; when it moved to the next grid
line, the whole prompt after the header missed the model's KV cache and was prefilled again
(bench open-files: ~250 of ~900 prompt tokens a request on average, refilled every fourth
request). The local backend now keeps the start that the KV cache holds when that costs a few
lines over the budget. Real daemon over stdio, tiny model, counters only (mlxd/stats).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _plain, daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import insert

pytestmark = pytest.mark.timeout(120)

URI = "file:///work/project/app.py"


def local_sum(st: dict[str, Any], key: str) -> int:
    return sum(e[key] for e in st["local"].values())


async def prefilled(s: Any) -> tuple[int, int]:
    """(prompt tokens, of them prefilled: not from the KV cache), summed over the models."""
    st = _plain(await s.request("mlxd/stats", {}))
    prompt = local_sum(st, "promptTokens")
    return prompt, prompt - local_sum(st, "cachedPromptTokens")


async def test_typing_new_lines_keeps_the_prompt_start_in_the_kv_cache(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = write_config(
        tmp_path / "kv.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 1\nmax_ms = 20000\n'
        # No work ahead (its warm-ups would fill the cache for the requests), a small budget:
        # the document is longer than it, so the window's start moves as lines are added.
        "whole_lines = false\nbackground = false\ncontext_tokens = 256\n",
    )
    lines = [f"value_{i} = compute({i}, scale={i % 7})\n" for i in range(120)]
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, "".join(lines), uri=URI)
        await inline(s, len(lines), 0, kind=2)  # cold: the whole prompt is prefilled
        costs = []
        for n in range(len(lines), len(lines) + 20):  # 20 new lines: past two grid steps
            new = f"value_{n} = compute({n}, scale={n % 7})\n"
            insert(s, n - len(lines) + 2, n, 0, new)
            before = await prefilled(s)
            await inline(s, n + 1, 0, kind=2)
            after = await prefilled(s)
            costs.append((after[0] - before[0], after[1] - before[1]))
    assert min(p for p, _ in costs) > 150  # the window fills the budget: a move refills it
    # A request prefills about its new line (~20 tokens), except where the window moves on:
    # once the prompt would be SLACK over the budget (a new line adds ~8% of it: every sixth
    # line), not on every grid step of the trim (every third line here; 6-7 refills).
    refills = [i for i, (_, new) in enumerate(costs) if new > 60]
    assert len(refills) <= 3, costs
    assert all(b - a >= 5 for a, b in zip(refills, refills[1:], strict=False)), costs
