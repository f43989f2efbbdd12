"""A runtime directory too deep for a Unix socket's path (sun_path: 108 bytes with its NUL on
Linux, 104 on macOS): the window is served in-process at once and told why, with what to
change; no daemon is started that could only fail to bind (issue #19, noticed in session 4)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.test_shared_daemon import daemon_pids, mlxd, start_raw

pytestmark = pytest.mark.slow


@pytest.fixture
def deep() -> Path:
    top = Path(tempfile.mkdtemp(prefix="mlxd-deep-"))
    path = top / ("d" * 110)  # the socket's path is over 108 bytes on any system
    try:
        yield path
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def test_a_socket_path_over_sun_path_serves_in_process_and_says_why(deep, tiny_config):
    d = await start_raw(deep, tiny_config)
    try:
        await d.initialize()
        r = await d.request("mlxd/stats")
        # In-process: this forwarder's own process answers (before too, after a daemon was
        # started and failed to bind; the reason was only in the daemon's log).
        assert r["result"]["server"]["pid"] == d.proc.pid
        assert daemon_pids(deep) == [] and not (deep / "daemon.log").exists()
    finally:
        await d.kill()
    err = (await d.proc.stderr.read()).decode()
    # Before: "mlxd: serving in-process: the shared daemon exited with 1 (see .../daemon.log)"
    assert "serving in-process: the socket path" in err and "MLXD_RUNTIME_DIR" in err, err


def test_status_and_stop_say_why_no_daemon_can_run_there(deep):
    for command in ("status", "stop"):
        out = mlxd(deep, command)
        assert out.returncode == 1 and "none can run there" in out.stdout, out
        assert "MLXD_RUNTIME_DIR" in out.stdout, out
