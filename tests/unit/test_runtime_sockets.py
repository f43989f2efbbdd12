"""runtime.sockets: every mlxd daemon socket of a runtime directory, whatever its version or
installation (`mlxd status` / `mlxd stop` list and stop them all: attack #19 finding F), and
runtime.too_long (a socket path over sun_path), runtime.alive (a zombie is gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlxd import __version__, runtime


def test_every_version_and_installation_is_found_ours_first(tmp_path: Path) -> None:
    names = [
        "mlxd-0.0.9-0123abcd.sock",  # an older version
        "mlxd-0.1.0.sock",  # a version that named its socket by its version only
        f"mlxd-{__version__}-{runtime.INSTALL}.sock",  # ours
        f"mlxd-{__version__}-ffffffff.sock",  # another installation of this version
        "mlxd-1.0.0rc1-deadbeef.sock",
    ]
    for name in names + ["daemon.log", "start.lock", "other.sock", f"mlxd-{__version__}.lock"]:
        (tmp_path / name).touch()
    found = runtime.sockets(tmp_path)
    assert [f.paths.socket.name for f in found][0] == names[2]
    got = {(f.version, f.install, f.ours) for f in found}
    assert got == {
        ("0.0.9", "0123abcd", False),
        ("0.1.0", None, False),
        (__version__, runtime.INSTALL, True),
        (__version__, "ffffffff", False),
        ("1.0.0rc1", "deadbeef", False),
    }
    old = next(f for f in found if f.version == "0.0.9")
    assert old.paths.stopped == tmp_path / "mlxd-0.0.9-0123abcd.stopped"
    assert old.paths.lock == tmp_path / "mlxd-0.0.9-0123abcd.lock"


def test_a_socket_path_over_sun_path_is_named_with_what_to_do() -> None:
    fits = Path("/") / ("d" * (runtime.SUN_PATH_MAX - 1))
    assert runtime.too_long(fits) is None
    why = runtime.too_long(fits.with_name(fits.name + "dd"))
    assert why is not None and runtime.RUNTIME_ENV in why and str(runtime.SUN_PATH_MAX) in why


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc")
def test_an_exited_process_not_yet_reaped_is_not_alive() -> None:
    # `mlxd stop` waits until the daemon's pid is gone; an orphaned daemon stays a zombie
    # until PID 1 reaps it (~1 s here, never in a container without an init), and was counted
    # alive all that time. Here the zombie is our own unreaped child.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        for _ in range(500):  # until it has exited (the parent does not reap it yet)
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert runtime.alive(child.pid) is False
        assert runtime.alive(os.getpid()) is True
    finally:
        child.wait()
