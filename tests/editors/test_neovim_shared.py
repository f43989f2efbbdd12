"""Issue #19: Neovim, unchanged, served through the shared daemon (`MLXD_SHARED=1`): the same
scenarios and assertions as test_neovim.py, with a runtime directory of the test's own; the
daemon's log shows it served the window, and no daemon is left after the test."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.editors.test_neovim as nv
from tests.e2e.test_shared_daemon import daemon_pids, rt  # noqa: F401 - the fixture

from .conftest import Nvim, NvimRunner

pytestmark = [pytest.mark.slow, pytest.mark.editor, pytest.mark.timeout(120)]


class SharedRunner:
    """The scenario runner, with every Neovim starting `mlxd serve` in shared mode."""

    def __init__(self, inner: NvimRunner, runtime_dir: Path) -> None:
        self.inner, self.runtime_dir = inner, runtime_dir

    def run(self, scenario: str, env: dict[str, str], timeout: float = 45, rtp: bool = True):
        shared = {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(self.runtime_dir)}
        return self.inner.run(scenario, {**env, **shared}, timeout, rtp)


def served_sessions(runtime_dir: Path) -> int:
    log = runtime_dir / "daemon.log"
    return log.read_text().count(" started (") if log.exists() else 0


def test_chat_through_the_shared_daemon(neovim: NvimRunner, tiny_config, tmp_path, rt):  # noqa: F811
    nv.test_chat_streams_the_selection_answer_into_the_chat_buffer(
        SharedRunner(neovim, rt), tiny_config, tmp_path
    )
    assert served_sessions(rt) == 1 and len(daemon_pids(rt)) == 1


def test_ghost_text_and_load_progress_through_the_shared_daemon(
    nvim: Nvim,
    neovim: NvimRunner,
    tiny_config,
    tmp_path,
    rt,  # noqa: F811
):
    impl = "native" if nvim.has_native_inline else "fallback"
    nv.test_ghost_text_appears_while_typing_and_accept_inserts_it(
        impl, nvim, SharedRunner(neovim, rt), tiny_config, tmp_path
    )
    assert served_sessions(rt) == 1 and len(daemon_pids(rt)) == 1
