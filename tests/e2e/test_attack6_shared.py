# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attack round 6 on the shared daemon (issue #19): new inputs against the download grace, the
taint file and the per-window environment. Real forwarders over real stdio, a real daemon of
this test's own runtime directory, a slow loopback Hub (tests/fakes/hf_hub.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import _plain, chat_params, daemon
from tests.e2e.test_download import REPO_ID, _download_children, hf_env, wait_for
from tests.e2e.test_privacy import open_doc
from tests.e2e.test_shared_daemon import (  # noqa: F401 (rt: the fixture)
    daemon_pids,
    rt,
    shared,
    start_raw,
    wait_gone,
)
from tests.e2e.test_shared_download_grace import child_after, close, config, token_of
from tests.e2e.test_shared_inline_priority import inline_params, until_streaming
from tests.fakes.hf_hub import FakeHub

pytestmark = pytest.mark.slow


def other_config(tmp_path: Path, tiny_model: Path, grace_s: float) -> Path:
    """A window that names another (local, loaded-from-disk) model and never loads it."""
    cfg = tmp_path / f"other-{grace_s}.toml"
    cfg.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n'
        f"[shared]\ndownload_grace_s = {grace_s}\n"
    )
    return cfg


async def test_another_windows_close_does_not_extend_a_closed_windows_download(
    rt, tmp_path, tiny_model
):
    """Steps: window A (HF_TOKEN hf_a, grace 5 s) downloads; A closes. Within A's grace an
    unrelated window C (another model, grace 600 s) opens and closes. A's download child, with
    A's token, must still end about 5 s after A closed: C's close must neither restart A's
    grace nor lend it C's length (else any window closing every < 30 s keeps a closed
    window's credentials downloading for ever)."""
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.3) as hub:
        env = {**hf_env(tmp_path, hub.url), "HF_TOKEN": "hf_a"}
        before = set(_download_children(hub.url))
        a = await start_raw(rt, config(tmp_path, 5), env=env)
        c = None
        try:
            await a.initialize()
            first = await child_after(before, hub)
            assert token_of(first) == "hf_a"
            await close(a)
            closed = time.monotonic()
            c = await start_raw(
                rt, other_config(tmp_path, tiny_model, 600), env=hf_env(tmp_path, "")
            )
            await c.initialize()
            await close(c)
            assert time.monotonic() - closed < 5, "too slow to test within A's grace"
            await wait_for(lambda: first not in _download_children(hub.url), timeout=12)
            assert hub.bytes_sent < hub.total_bytes
        finally:
            for d in (a, c):
                if d is not None:
                    await d.kill()


def gone_cwd(tmp_path: Path) -> list[str]:
    """A prefix that starts the command in a working directory deleted before it runs (an
    editor opened in a folder since removed: a deleted git worktree, a cleaned temp dir)."""
    where = tmp_path / "gone"
    where.mkdir()
    return ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(where)]


@pytest.mark.parametrize("how", ["no config", "absolute config", "relative config"])
async def test_a_window_whose_working_directory_was_deleted_is_served(
    rt, tmp_path, tiny_config, how
):
    """Steps: `mlxd serve` (shared, the default) starts in a deleted working directory, with
    no --config, an absolute one, or a relative one (which cannot be read: a config problem,
    not a crash). The editor must get its `initialize` answered and `mlxd/stats` served by a
    shared daemon, as in-process serving does (before: a FileNotFoundError traceback from
    os.getcwd(), or os.path.abspath() of the relative config, and exit 1 before any answer)."""
    config = {"no config": None, "absolute config": tiny_config}.get(how, Path("mlxd.toml"))
    s = await start_raw(rt, config, parent=gone_cwd(tmp_path))
    try:
        await s.initialize()
        r = await s.request("mlxd/stats", {})
        assert r["result"]["server"]["sessions"] == 1, r
    finally:
        await s.kill()


async def test_a_windows_long_inline_budget_does_not_hold_another_windows_chat(
    rt, tmp_path, one_line_model
):
    """Steps: window A's config allows long inline answers (inline.max_ms = 10 min, max_tokens
    1000, every line: its own choice); window B streams a 60-token chat of the same model. A
    asks an inline completion while B streams. B's chat must end before A's long inline answer
    does (an order, not a time): A's settings may slow A, never hold B until A is served."""
    base = f'[local]\nmodel = "{one_line_model}"\npreload = true\nspeculative = "off"\n'
    inline = '[inline]\nwhole_lines = false\nbackground = false\nmulti_line = "always"\n'
    a_cfg = tmp_path / "a.toml"
    a_cfg.write_text(base + inline + "max_ms = 600000\nmax_tokens = 1000\n")
    b_cfg = tmp_path / "b.toml"
    b_cfg.write_text(base + inline)
    async with daemon(a_cfg, env=shared(rt)) as a, daemon(b_cfg, env=shared(rt)) as b:
        await a.wait_status("ready", timeout=120)
        open_doc(a, "file:///p/main.py", "def add(a, b):\n    return a + b\n\nx = add(1, ")
        _, chat = b.start("mlxd/chat", chat_params("count", "chat", maxTokens=60))
        await until_streaming(b, "chat")
        got = asyncio.ensure_future(
            a.client.text_document_inline_completion_async(
                inline_params("file:///p/main.py", 3, 11)
            )
        )
        done, _ = await asyncio.wait({chat, got}, return_when=asyncio.FIRST_COMPLETED, timeout=300)
        assert chat in done, "B's chat was held until A's inline answer ended"
        assert _plain(await chat)["backend"] == "local"
        await asyncio.wait_for(got, 300)
        items = got.result()
        assert isinstance(items, T.InlineCompletionList)
        # Long indeed (about 3 characters a token): B's chat ran while it was written.
        assert max(len(str(i.insert_text)) for i in items.items) > 1500


async def test_a_window_of_idle_exit_0_is_served_shared_and_the_daemon_exits_after_it(rt, tmp_path):
    """Steps: shared.idle_exit_s = 0 ("exit with the last session"); one window opens, asks
    mlxd/stats, closes. It must be served by a shared daemon (not in-process), and that daemon
    must be gone after the window closed. Before: the daemon exited before the window that
    started it had joined (its idle timer of 0 s ran from its start), and the forwarder
    started daemon after daemon, never answering `initialize`."""
    cfg = tmp_path / "idle0.toml"
    cfg.write_text("[shared]\nidle_exit_s = 0\n")
    s = await start_raw(rt, cfg)
    try:
        await asyncio.wait_for(s.initialize(), 20)
        pid = (await s.request("mlxd/stats", {}))["result"]["server"]["pid"]
        assert pid != s.proc.pid, "served in-process"
        await close(s)
        assert wait_gone([pid]) == []
    finally:
        await s.kill()


async def test_windows_opening_as_an_idle_exit_0_daemon_exits_are_served_shared(rt, tmp_path):
    """Steps: shared.idle_exit_s = 0. Eight times, a window opens at the moment the previous
    one closes (its EOF sent, not awaited), so that it connects while the daemon is exiting.
    Each must be answered by a shared daemon (mlxd/stats' server.pid is not the forwarder's),
    none served in-process."""
    cfg = tmp_path / "idle0.toml"
    cfg.write_text("[shared]\nidle_exit_s = 0\n")
    prev = await start_raw(rt, cfg)
    try:
        await asyncio.wait_for(prev.initialize(), 20)
        for _ in range(8):
            assert "result" in await prev.request("shutdown")
            prev.send({"jsonrpc": "2.0", "method": "exit"})
            assert prev.proc.stdin is not None
            prev.proc.stdin.close()
            nxt = await start_raw(rt, cfg)
            await asyncio.wait_for(nxt.initialize(), 20)
            r = await nxt.request("mlxd/stats", {})
            assert r["result"]["server"]["pid"] != nxt.proc.pid, "served in-process"
            assert await prev.wait(10) == 0
            prev = nxt
    finally:
        await prev.kill()


class DroppingDaemon:
    """A live socket at the daemon's address that takes each connection's hello and hangs up,
    for ever: a daemon whose session set-up fails for this window (it logs "dropped a
    connection" and serves on), or a daemon crash-looping on the window's replayed state."""

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(0.2)
            try:
                while conn.recv(1 << 16):
                    pass
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.listener.close()


async def test_a_daemon_that_drops_every_session_leaves_the_window_served_in_process(rt, tmp_path):
    """Steps: a live socket at the daemon's path takes each hello and hangs up, for ever. The
    window must get `initialize` answered within START_WAIT_S and a margin (in-process, as
    the README promises when no daemon can be had), and the tries must stop. Before: the
    forwarder reconnected for ever (about 5 a second), never answering `initialize`."""
    from mlxd import runtime

    planted = DroppingDaemon(runtime.Paths.at(rt).socket)
    s = await start_raw(rt, None)
    try:
        init = {"processId": None, "capabilities": {}, "rootUri": None}
        s.send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": init})
        assert "result" in await s.response("init", timeout=50)
        r = await s.request("mlxd/stats", {})
        assert r["result"]["server"]["sessions"] == 1
        assert daemon_pids(rt) == []  # served by an in-process server of the window's own
        tries = planted.accepted
        await asyncio.sleep(1)
        assert planted.accepted == tries  # served: it stopped trying
    finally:
        planted.close()
        await s.kill()
