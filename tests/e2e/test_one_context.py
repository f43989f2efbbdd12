"""One inline path (issue #13): an inline request served by the local model builds its cursor
context once. Before, the engine built it (context_at) and the local backend rebuilt it from
prefix + suffix for its FIM prompt: two per request (and one more for each prompt size the
local backend tried against the time cap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import _plain, daemon
from tests.e2e.test_inline_e2e import inline, inline_config, open_doc  # noqa: F401 (fixture)

# Work ahead (inline.background) builds the contexts of other positions, in the background:
# counted by test_work_ahead.py, off here.
NO_BACKGROUND = {"inline": {"background": False}}

pytestmark = pytest.mark.timeout(60)


async def test_a_local_inline_request_builds_its_cursor_context_once(
    inline_config: Path,  # noqa: F811
) -> None:
    async with daemon(inline_config, init_options=NO_BACKGROUND) as s:
        open_doc(s, "def add(a, b):\n    return ")
        before = _plain(await s.request("mlxd/stats", {}))["inline"]
        await inline(s, 1, 11, kind=2)  # automatic: one generation, no alternatives
        after = _plain(await s.request("mlxd/stats", {}))["inline"]
    assert after["generations"] - before["generations"] == 1
    assert after["contextBuilds"] - before["contextBuilds"] == 1
