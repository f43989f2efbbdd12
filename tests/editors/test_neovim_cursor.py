"""The Neovim plugin tells the daemon where the cursor rests (`mlxd/didMoveCursor`, issue #16
item 4), so it can warm the prompt there: a real headless Neovim, the real daemon (its
`mlxd/stats` `inline.cursorMoves` counts what it accepted), scenario editors/neovim/tests/cursor.lua.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Nvim, NvimRunner
from .test_neovim import ghost_cases, ghost_impls, sample_file, scenario_env

pytestmark = [pytest.mark.slow, pytest.mark.editor, pytest.mark.timeout(120)]

# Lines long enough for the moves the scenario makes (5 down, 3 right, then down and insert).
LINES = [f"value_{i} = {i} * 2  # line {i}" for i in range(12)]


def lsp_character(text: str, byte_col: int, encoding: str) -> int:
    """A byte column of `text` as an LSP character offset in `encoding`."""
    prefix = text.encode()[:byte_col].decode()
    if encoding == "utf-8":
        return byte_col
    if encoding == "utf-16":
        return len(prefix.encode("utf-16-le")) // 2
    return len(prefix)


def one_send_at_rest(phase: dict[str, Any], encoding: str) -> None:
    """The phase sent exactly one notification, at the resting cursor, for the Python file,
    and the daemon counted exactly one."""
    at = phase["at"]
    want = {"line": at["line"], "character": lsp_character(at["text"], at["col"], encoding)}
    got = [{"line": s["line"], "character": s["character"]} for s in phase["sent"]]
    assert got == [want], phase
    assert all(s["uri"].endswith("/fib.py") for s in phase["sent"]), phase
    assert phase["delta"] == 1, phase


@ghost_cases()
def test_a_resting_cursor_is_sent_once_and_counted(
    impl: str, nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    if impl not in ghost_impls(nvim):
        pytest.skip(f"native inline completion needs Neovim 0.12; this is {nvim.version}")
    sample_file(tmp_path, "\n".join(LINES) + "\n")
    (tmp_path / "work" / "notes.md").write_text("# Notes\n\none\ntwo\nthree\n")
    env = scenario_env(tiny_config, tmp_path, MLXD_TEST_GHOST=impl, MLXD_TEST_CURSOR="on")
    run = neovim.run("cursor", env, timeout=90)
    r, ctx = run.result, run.context()
    assert r["advertised"] is True, ctx
    enc = r["encoding"]
    # Opening the file: its cursor's position, once (and nothing more while it rests).
    assert r["opened"] == 1 and r["opened_later"] == 1, ctx
    # A burst of moves: one notification where the cursor came to rest.
    one_send_at_rest(r["burst"], enc)
    assert r["burst"]["sent"][0]["line"] == 5 and r["burst"]["sent"][0]["character"] == 3, ctx
    # Insert mode, after a character of 2 UTF-8 bytes: the column in the client's encoding.
    one_send_at_rest(r["insert"], enc)
    assert "é" in r["insert"]["at"]["text"][:5], ctx
    one_send_at_rest(r["escape"], enc)
    # Back where the last one went, ghost text toggled off, a markdown buffer: nothing; only
    # the later move that must be sent was.
    for name in ("back", "toggled", "markdown"):
        one_send_at_rest(r[name], enc)
    assert r["markdown"]["sent_md"] == [], ctx
    # Normal mode on the line's last character: the end of the line (after it), once.
    end = r["line_end"]["at"]
    assert end["col"] == len(end["text"].encode()) - 1, ctx  # on its last character (ASCII)
    line_end = {"line": end["line"], "character": lsp_character(end["text"], end["col"] + 1, enc)}
    assert [{k: s[k] for k in ("line", "character")} for s in r["line_end"]["sent"]] == [
        line_end
    ], ctx
    # Detached: the buffer's timer and autocommands are gone.
    assert r["buffers_attached"], ctx
    assert r["group_after_detach"] is False, ctx


def test_nothing_is_sent_with_ghost_text_off(
    nvim: Nvim, neovim: NvimRunner, tiny_config: Path, tmp_path: Path
) -> None:
    sample_file(tmp_path, "\n".join(LINES) + "\n")
    env = scenario_env(tiny_config, tmp_path, MLXD_TEST_CURSOR="ghost_off")
    r, ctx = (run := neovim.run("cursor", env)).result, run.context()
    assert r["advertised"] is True, ctx  # the daemon would take them: the switch held them back
    assert r["sent"] == [] and r["buffers"] == [] and r["moves"] == 0, ctx


def test_nothing_is_sent_to_a_server_that_does_not_list_the_method(
    nvim: Nvim, neovim: NvimRunner, tmp_path: Path
) -> None:
    """An older daemon (here a small pygls server standing in for one) does not list
    `mlxd/didMoveCursor` in capabilities.experimental.mlxd.methods: the client sends none."""
    sample_file(tmp_path, "\n".join(LINES) + "\n")
    server = Path(__file__).parent / "servers" / "several_items.py"
    env = {
        "MLXD_TEST_CMD": json.dumps([sys.executable, str(server)]),
        "MLXD_TEST_FILE": str(tmp_path / "work" / "fib.py"),
        "MLXD_TEST_CURSOR": "unadvertised",
    }
    r, ctx = (run := neovim.run("cursor", env)).result, run.context()
    assert r["advertised"] is False, ctx
    assert r["sent"] == [] and r["buffers"] == [], ctx
