"""The Neovim plugin sends yanks to the daemon (`mlxd/didCopy`, issue #16 item 5), which keeps
them as neighbour snippets for inline prompts: a real headless Neovim, the real daemon (its
`mlxd/stats` `inline.copies` counts what it kept), scenario editors/neovim/tests/copy.lua."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Nvim, NvimRunner
from .test_neovim import ghost_cases, ghost_impls, sample_file, scenario_env

pytestmark = [pytest.mark.slow, pytest.mark.editor, pytest.mark.timeout(120)]

LINES = [f"value_{i} = compute_total({i}, factor=2)  # line {i}" for i in range(8)]
TWO = "\n".join(LINES[:2])


@ghost_cases()
def test_a_yank_is_sent_and_kept_and_nothing_else_is(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path, "\n".join(LINES) + "\n")
    env = scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl)
    run = neovim.run("copy", env, timeout=90)
    r, ctx = run.result, run.context()
    assert r["advertised"] is True, ctx
    assert r["lines"] == [{"uri": r["uri"], "text": TWO}], ctx
    assert r["uri"].endswith("/fib.py") and r["counted"] == 1, ctx
    # A yanked word, a deleted line, a yank with ghost text toggled off: nothing sent; each
    # phase's one notification is the two-line yank after it.
    for phase in ("word", "delete", "toggled"):
        assert r[phase] == [{"uri": r["uri"], "text": TWO}], (phase, ctx)
    # The same two lines again each time: the daemon keeps one chunk of them, counting each.
    assert r["copies"] == 4, ctx
    long, two = r["long"]
    assert long["text"] == "é" * 16000 and two == {"uri": r["uri"], "text": TWO}, ctx
    assert r["buffers_attached"] and r["group_after_detach"] is False, ctx
