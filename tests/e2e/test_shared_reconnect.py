# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""A forwarder meets a shared daemon that is going away (issue #19, item 5; CI's flake).

A daemon killed or stopping still accepts connections for a moment and then drops them, and
holds its lock until the kernel has closed its files. A forwarder that connects in that moment
must try again (start a new daemon) instead of leaving the editor without a server: a
forwarder exited 1 in CI after `kill -9` of its daemon. Real forwarders over real stdio, real
daemons in a runtime directory of the test's own, a real socket that plays the dying daemon.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlxd import runtime
from tests.e2e.test_shared_daemon import daemon_pids, mlxd, rt, start_raw  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

# A window whose hello (its environment) is far bigger than a socket's buffer: sending it
# takes the daemon's reading, so a daemon that drops the connection fails the send for sure.
BIG_ENV = {f"MLXD_TEST_PAD_{i}": "x" * 100_000 for i in range(8)}


class DyingDaemon:
    """A socket at the daemon's address that accepts one connection and resets it, as a
    daemon being killed does; its file is gone by then, so the next connect is refused."""

    def __init__(self, path: Path, last_words: bytes = b"") -> None:
        self.path, self.last_words = path, last_words
        staged = path.with_name("dying.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(staged))
        self.listener.listen(8)
        os.replace(staged, path)  # a live daemon keeps its connections; new ones come here
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.path.unlink()
        self.listener.close()
        conn.sendall(self.last_words)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, with the hello unread
        self.accepted.set()


async def _stats(d) -> dict:
    r = await d.request("mlxd/stats")
    assert "result" in r, r
    return r["result"]["server"]


def _config(tmp_path: Path, tiny_model: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n')
    return cfg


async def test_a_daemon_that_drops_the_first_connection_is_replaced_at_start(
    rt, tmp_path, tiny_model
):
    dying = DyingDaemon(runtime.Paths.at(rt).socket)
    d = await start_raw(rt, _config(tmp_path, tiny_model), env=BIG_ENV)
    try:
        await d.initialize()
        assert dying.accepted.is_set()
        server = await _stats(d)
        # Before: "serving in-process: the shared daemon hung up" (the forwarder's own pid).
        assert server["pid"] != d.proc.pid and daemon_pids(rt) == [server["pid"]]
    finally:
        await d.kill()


async def test_a_daemon_that_drops_the_reconnect_is_replaced_after_a_crash(
    rt, tmp_path, tiny_model
):
    d = await start_raw(rt, _config(tmp_path, tiny_model), env=BIG_ENV)
    try:
        await d.initialize()
        first = (await _stats(d))["pid"]
        dying = DyingDaemon(runtime.Paths.at(rt).socket)
        os.kill(first, signal.SIGKILL)
        for _ in range(5):  # a request sent before the forwarder noticed fails with -32803
            r = await d.request("mlxd/stats")
            if "result" in r:
                break
            assert r["error"]["code"] == -32803, r
        # Before: the forwarder exited 1 ("the new shared daemon hung up"): no answer at all.
        assert dying.accepted.is_set()
        second = r["result"]["server"]["pid"]
        assert second != first and daemon_pids(rt) == [second]
        assert d.proc.returncode is None
    finally:
        await d.kill()


async def test_a_dying_daemon_holding_its_lock_long_does_not_send_the_window_in_process(
    rt, tmp_path, tiny_model
):
    """A daemon still exiting holds the lock past the new daemon's wait (5 s): the new one
    leaves with 0, nothing serves, and the forwarder starts another instead of waiting out
    its 30 s and serving in-process."""
    paths = runtime.Paths.at(rt)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(paths.lock)!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(12)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        d = await start_raw(rt, _config(tmp_path, tiny_model))
        try:
            await d.initialize()
            server = await _stats(d)
            assert server["pid"] != d.proc.pid and daemon_pids(rt) == [server["pid"]]
        finally:
            await d.kill()
    finally:
        holder.kill()
        holder.wait()


async def test_an_unusable_runtime_directory_serves_in_process_and_says_why_once(
    rt, tmp_path, tiny_model
):
    rt.chmod(0o755)  # others could read it: no socket there
    d = await start_raw(rt, _config(tmp_path, tiny_model))
    try:
        await d.initialize()
        assert (await _stats(d))["pid"] == d.proc.pid and daemon_pids(rt) == []
        assert d.proc.stdin is not None
        d.proc.stdin.close()  # EOF: the in-process server exits, and its stderr can be read
        why = await d.ended()
        # Once: the in-process server re-executes itself with OpenBLAS preloaded (blas.py);
        # before, the new process tried the shared daemon again, said it again, and could
        # wait out START_WAIT_S a second time.
        assert why.count("serving in-process: runtime directory unusable") == 1, why
    finally:
        await d.kill()
        rt.chmod(0o700)


@pytest.mark.parametrize("last_words", [b"", b'{"pid": 12'])
def test_mlxd_status_and_stop_take_a_daemon_going_away_for_none(rt, last_words):
    for command in ("status", "stop"):
        dying = DyingDaemon(runtime.Paths.at(rt).socket, last_words)
        done = mlxd(rt, command)
        assert dying.accepted.is_set()
        # Before: a JSONDecodeError traceback for half an answer.
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "no shared mlxd daemon" in done.stdout
