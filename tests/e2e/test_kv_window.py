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
from tests.kit import STDLIB, open_files

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


def _window(prefix: str, n: int) -> str:
    """A 20-line window of a neighbour file, its own identifiers `prefix`_0..n-1."""
    names = [f"{prefix}_{i}" for i in range(n)]
    lines = [f"{names[i % n]} = {names[(i + 1) % n]} + {i}" for i in range(20)]
    return "\n".join(lines) + "\n"


async def test_a_new_line_does_not_swap_the_neighbour_snippets_at_the_prompt_start(
    tmp_path: Path, tiny_model: Path
) -> None:
    # Snippets open the prompt: a different pick is a different prompt from its first line,
    # and the KV cache holds none of it. The pick was remade on every request from the lines
    # above the cursor, so a line that shared more words with another window of a neighbour
    # swapped it. It is kept now while those lines stay much the same (the last pick's words).
    cfg = write_config(
        tmp_path / "snippets.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 1\nmax_ms = 20000\n'
        "whole_lines = false\nbackground = false\n",
    )
    # Two windows, one fits the snippet budget: "alpha" shares 3 words with the document,
    # "beta" 5 with the line typed last. 40 lines of the document's own words around them.
    neighbour = _window("alpha", 6) + _window("beta", 6)
    own = [f"item_{i} = load(record_{i}, alpha_{i % 3})\n" for i in range(40)]
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, neighbour, uri="file:///work/project/other.py")
        open_doc(s, "".join(own), uri=URI)
        await inline(s, len(own), 0, kind=2)
        insert(s, 2, len(own), 0, "total = beta_0 + beta_1 + beta_2 + beta_3 + beta_4\n")
        before = await prefilled(s)
        await inline(s, len(own) + 1, 0, kind=2)
        after = await prefilled(s)
    prompt, new = after[0] - before[0], after[1] - before[1]
    assert prompt > 200  # snippet, path and document
    assert new < 40, (prompt, new)  # the typed line (and the last token again), not the prompt


async def test_typing_on_with_six_files_open_keeps_the_snippets_in_the_kv_cache(
    tmp_path: Path, tiny_model: Path
) -> None:
    # bench open-files: lines typed in one place with six files of the same language open. The
    # words above the cursor drift as lines are added; a pick remade whenever they had drifted a
    # quarter swapped the snippets every ~7 requests, to windows no better, and each swap
    # refilled the whole prompt (1 token from the KV cache). A pick is kept now while it is
    # still half as relevant as a new one would be.
    cfg = write_config(
        tmp_path / "six.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\nmax_tokens = 1\nmax_ms = 20000\n'
        "whole_lines = false\nbackground = false\n",
    )
    text = (STDLIB.parent / "json" / "decoder.py").read_text(encoding="utf-8")[:3000]
    own = text[: text.rfind("\n") + 1].splitlines(keepends=True)
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        for uri, _, neighbour in open_files():
            open_doc(s, neighbour, uri=uri)
        open_doc(s, "".join(own), uri=URI)
        await inline(s, len(own), 0, kind=2)  # cold: the whole prompt is prefilled
        cached = []
        for n in range(25):
            insert(s, n + 2, len(own), 0, f"def handler_{n}(request, value_{n}):\n    pass\n")
            own += ["", ""]
            before = await prefilled(s)
            await inline(s, len(own), 0, kind=2)
            after = await prefilled(s)
            cached.append((after[0] - before[0]) - (after[1] - before[1]))
    # The snippets (~200 tokens) open every prompt from the KV cache; what the window's moves
    # refill comes after them.
    assert min(cached) >= 150, cached
