"""The next suggestion from the shown answer's own generation (issue #17 item 2), real daemon
over stdio, with a tiny model that writes a known text (make_tiny_model's `script`): what is
shown and pregenerated does not depend on timing or on a random walk.

A line's answer ends where its line does, but its generation goes on in the same decode, at
background priority, with the line after it: that is the next suggestion, at the position after
the shown one, ready when the user accepts. Before, the generation was stopped at the line end
and a second job generated the next line anew (a gap, the prompt built and matched again, a
first step), and at 600 ms after the ghost text showed it was still running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import BLOCK, daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import insert, local_total, stats, until

pytestmark = pytest.mark.timeout(120)

LINE, NEXT = " b)", "bar += 2"  # after "print(a,": the rest of the line, then the next one
URI = "file:///work/project/app.py"


@pytest.fixture(scope="module")
def two_lines_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Greedy, after a prompt ending in ",", it writes LINE, a line break, NEXT, then eos."""
    from mlxd.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("tiny-two-lines") / "model"
    return make_tiny_model(path, script="," + LINE + "\n" + NEXT)


def config(tmp_path: Path, model: Path, extra: str = "") -> Path:
    return write_config(
        tmp_path / "next.toml",
        f'[local]\nmodel = "{model}"\n[inline]\nmax_ms = 20000\n{extra}',
    )


def texts(result: T.InlineCompletionList) -> list[str]:
    return [item.insert_text for item in result.items]


async def test_the_next_suggestion_is_the_shown_answers_generation_going_on(
    tmp_path, two_lines_model
) -> None:
    async with daemon(config(tmp_path, two_lines_model)) as s:
        await s.wait_status("ready")
        open_doc(s, "print(a,")
        assert texts(await inline(s, 0, 8, kind=2)) == [LINE]
        before = await until(s, lambda st: st["inline"]["aheadStored"] == 1)
        insert(s, 2, 0, 8, LINE)  # the user accepts the ghost text
        nxt = await inline(s, 0, 8 + len(LINE), kind=2)
        after = await stats(s)
    assert texts(nxt) == ["\n" + NEXT]
    a, b = after["inline"], before["inline"]
    # One generation reached the model for both suggestions: the shown one's, which went on.
    assert local_total(before, "generations") == 1
    assert (b["aheadStarted"], b["aheadContinued"], b["aheadStored"]) == (1, 1, 1)
    assert a["generations"] == b["generations"] == 1  # the accept asked no model
    assert a["aheadHits"] == 1


async def test_a_blocks_second_line_is_its_first_lines_generation_going_on(
    tmp_path, script_model
) -> None:
    # At a block start the request asks for the first line and the rest goes on (inline/rest.py;
    # the request shows what of it is written by its bound: here all). Before, the rest was a
    # second request (a gap, a first step) that stored nothing until the whole block was done:
    # the accept of the first line waited for all of it. Now the first line's own generation
    # goes on, and the next line is stored as soon as it is finished.
    first, second = BLOCK.split("\n")[1], BLOCK.split("\n")[2]
    async with daemon(config(tmp_path, script_model)) as s:
        await s.wait_status("ready")
        open_doc(s, "def add(a, b):")
        assert texts(await inline(s, 0, 14, kind=2)) == [BLOCK]
        done = ("restStored", 1), ("aheadActive", 0)  # the work ahead after it, too
        before = await until(s, lambda st: all(st["inline"][k] == n for k, n in done))
        insert(s, 2, 0, 14, "\n" + first)  # the user accepts the block's first line (a word-
        # or line-wise accept)
        nxt = await inline(s, 1, len(first), kind=2)
    assert texts(nxt) == ["\n" + second]
    b = before["inline"]
    # The first line's, which went on; and the next job's after the block shown (its line
    # after the block, for the accept of all of it), the only other one.
    assert local_total(before, "generations") == 1 + b["aheadStarted"], before
    assert b["aheadStarted"] <= 1 and b["aheadContinued"] == 1 and b["restStarted"] == 1, b
