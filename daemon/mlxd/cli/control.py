"""`mlxd status` and `mlxd stop`: the shared daemon's control commands (a hello with
"control" instead of a window). Standard library and runtime.py only."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import runtime


def control(command: str) -> dict[str, Any] | None:
    """Ask the running daemon (`status` | `stop`); None when none runs."""
    import json

    sock = runtime.connect(runtime.paths().socket, timeout=5.0)
    if sock is None:
        return None
    data = b""
    with sock:
        try:  # a daemon going away may take the connection and drop it: none runs, then
            sock.sendall(runtime.hello({"control": command}))
            sock.settimeout(10.0)
            while not data.endswith(b"\n") and (chunk := sock.recv(1 << 16)):
                data += chunk
        except OSError:
            return None
    try:
        return json.loads(data) if data.endswith(b"\n") else None
    except ValueError:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    info = control("status")
    if info is None:
        print(f"no shared mlxd daemon at {runtime.paths().socket}")
        return 1
    print(f"mlxd {info['version']} daemon, pid {info['pid']}, up {info['uptime_s']} s")
    print(f"sessions: {info['sessions']}")
    for spec, nbytes in info["models"].items():
        print(f"model: {spec} ({nbytes / 1e6:.0f} MB)")
    print(f"memory (RSS): {info['rssBytes'] / 1e6:.0f} MB")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    info = control("stop")
    if info is None:
        print("no shared mlxd daemon running")
        return 1
    pid = info["pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and runtime.alive(pid):
        time.sleep(0.05)
    print(f"stopped the shared mlxd daemon (pid {pid})")
    return 0
