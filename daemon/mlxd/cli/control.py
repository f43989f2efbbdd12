"""`mlxd status` and `mlxd stop`: the shared daemons' control commands (a hello with "control"
instead of a window). Standard library and runtime.py only.

Both see every mlxd daemon in the runtime directory, not only this version's: after an upgrade
(or from another checkout or virtual environment) the other installation's daemon still holds
its model until its windows close, and only these commands show it and end it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__, runtime

STOP_WAIT_S = 10.0


SILENT = "silent"  # a daemon accepted the connection, then dropped it or said nothing whole
ANSWER_WAIT_S = 10.0  # a daemon that says nothing for this long is hung (or SIGSTOPped)


@dataclass(frozen=True)
class Hung:
    """A daemon that took the connection and gave no answer within ANSWER_WAIT_S: its loop is
    blocked, or it is stopped (SIGSTOP, Ctrl-Z). `pid`: the socket's peer (None: unknown)."""

    pid: int | None


def control(command: str, socket: Path | None = None) -> dict[str, Any] | None:
    """Ask the daemon serving `socket` (default: this installation's) `status` | `stop`; None
    when none serves it or it does not answer."""
    answer = _ask(command, socket or runtime.paths().socket)
    return answer if isinstance(answer, dict) else None


def _ask(command: str, socket: Path) -> dict[str, Any] | str | Hung | None:
    """The daemon's answer; None when nothing serves `socket` (a crashed daemon's file), SILENT
    when it took the connection and dropped it (a daemon going away) or said nothing whole,
    Hung when it said nothing for ANSWER_WAIT_S."""
    import json

    sock = runtime.connect(socket, timeout=5.0)
    if sock is None:
        return None
    data = b""
    with sock:
        try:  # a daemon going away may take the connection and drop it
            sock.sendall(runtime.hello({"control": command}))
            sock.settimeout(ANSWER_WAIT_S)
            while not data.endswith(b"\n") and (chunk := sock.recv(1 << 16)):
                data += chunk
        except TimeoutError:
            return Hung(runtime.peer_pid(sock))
        except OSError:
            return SILENT
    try:
        info = json.loads(data) if data.endswith(b"\n") else None
    except ValueError:
        return SILENT
    return info if isinstance(info, dict) else SILENT


def _each(command: str, directory: Path) -> list[tuple[runtime.Found, dict[str, Any] | str | Hung]]:
    """(socket, answer or SILENT) for each daemon of `directory` that `command` reached."""
    if not directory.is_dir():
        return []
    asked = [(f, _ask(command, f.paths.socket)) for f in runtime.sockets(directory)]
    return [(f, answer) for f, answer in asked if answer is not None]


def _which(found: runtime.Found, info: dict[str, Any]) -> str:
    """`mlxd 0.1.0 daemon (this installation)` / `(another installation: <code>, <python>)`."""
    version = info.get("version") or found.version
    if found.ours:
        return f"mlxd {version} daemon (this installation)"
    where = ", ".join(str(info[k]) for k in ("code", "python") if info.get(k))
    kind = "another version" if found.version != __version__ else "another installation"
    return f"mlxd {version} daemon ({kind}{': ' + where if where else ''})"


def _none(directory: Path) -> int:
    print(f"no shared mlxd daemon running in {directory}")
    if (why := runtime.too_long(runtime.Paths.at(directory).socket)) is not None:
        print(f"(none can run there: {why})")
    return 1


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _show(f: runtime.Found, info: dict[str, Any]) -> None:
    """One daemon's status. Another version's answer may lack a field or give it another
    type: what is there is shown, the rest is not (never a traceback)."""
    up = _number(info.get("uptime_s"))
    print(
        f"{_which(f, info)}, pid {info.get('pid', '?')}"
        + (f", up {up} s" if up is not None else "")
    )
    if "sessions" in info:
        print(f"sessions: {info['sessions']}")
    models = info.get("models")
    for spec, nbytes in models.items() if isinstance(models, dict) else ():
        size = _number(nbytes)
        print(f"model: {spec}" + (f" ({size / 1e6:.0f} MB)" if size is not None else ""))
    if (rss := _number(info.get("rssBytes"))) is not None:
        print(f"memory (RSS): {rss / 1e6:.0f} MB")


def _directory() -> Path | None:
    """The runtime directory; None (and why, on stderr) when it cannot be named."""
    try:
        return runtime.runtime_dir()
    except runtime.NoRuntimeDir as exc:
        print(f"mlxd: {exc}", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    if (directory := _directory()) is None:
        return 1
    answers = _each("status", directory)
    for f, info in answers:
        if isinstance(info, Hung):
            print(f"mlxd {f.version} daemon at {f.paths.socket}: {_hung(info)}")
        elif not isinstance(info, dict):
            print(f"mlxd {f.version} daemon at {f.paths.socket}: not answering")
        else:
            _show(f, info)
    if any(isinstance(info, Hung) for _, info in answers):
        return 1
    if not any(isinstance(info, dict) for _, info in answers):
        return _none(directory)
    if any(not f.ours for f, _ in answers):
        print("`mlxd stop` stops them all; each window's next `mlxd serve` starts its own")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop every mlxd daemon of the runtime directory (their windows' forwarders end; the
    editors start `mlxd serve` again, which starts this installation's)."""
    if (directory := _directory()) is None:
        return 1
    stopping = []
    for f, info in _each("stop", directory):
        if isinstance(info, Hung) and info.pid is not None and _kill_hung(f, info.pid):
            print(f"mlxd {f.version} daemon at {f.paths.socket}: {_hung(info)}; killed")
            stopping.append((f, info.pid))
        elif isinstance(info, dict):
            pid = info.get("pid")
            stopping.append((f, pid if isinstance(pid, int) and pid > 0 else None))
        else:
            print(f"mlxd {f.version} daemon at {f.paths.socket}: not answering; not stopped")
    if not stopping:
        return _none(directory)
    deadline = time.monotonic() + STOP_WAIT_S
    pids = [pid for _, pid in stopping if pid is not None]
    while time.monotonic() < deadline and any(runtime.alive(pid) for pid in pids):
        time.sleep(0.05)
    for f, pid in stopping:
        which = "the shared mlxd daemon" if f.ours else f"the mlxd {f.version} daemon"
        left = " (still exiting)" if pid is not None and runtime.alive(pid) else ""
        print(f"stopped {which} (pid {pid if pid is not None else '?'}){left}")
    return 0


def _hung(info: Hung) -> str:
    pid = f"pid {info.pid}" if info.pid is not None else "pid unknown"
    return f"no answer in {ANSWER_WAIT_S:.0f} s ({pid}): hung, or stopped (SIGSTOP, Ctrl-Z)"


def _kill_hung(f: runtime.Found, pid: int) -> bool:
    """End a daemon that does not answer: SIGKILL (a blocked loop never runs its SIGTERM
    handler, a stopped process never receives SIGTERM), after leaving the stop marker so
    that its windows end as at any `mlxd stop` instead of starting a new daemon. Only a
    process that is an mlxd daemon (checked in /proc where there is one: the pid was read
    10 s ago); False when it is not."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        cmd = None if Path("/proc/self").exists() else [b"mlxd", b"daemon"]  # gone / no /proc
    except OSError:
        cmd = None
    if not cmd or b"daemon" not in cmd or not any(b"mlxd" in part for part in cmd):
        return False
    with contextlib.suppress(OSError):
        f.paths.stopped.write_text(f"{pid} mlxd stop")
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True
