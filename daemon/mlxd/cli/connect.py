"""How a forwarder (forward.py) reaches the shared daemon: connect, or start it detached and
connect, send the window's hello and wait for the daemon's welcome (runtime.WELCOME), within
START_WAIT_S. Standard library and runtime.py only, as forward.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from .. import runtime

START_WAIT_S = 30.0  # a cold daemon imports pygls, msgspec, aiohttp and MLX first
WELCOME_WAIT_S = 5.0  # the least time a daemon that took the connection has to welcome it


def connect(paths: runtime.Paths, idle_exit_s: float, hello: bytes) -> socket.socket | str:
    """A daemon's connection with `hello` sent, starting the daemon when none serves; the
    reason when none can be had within START_WAIT_S. Tried again until then: a daemon that is
    going away (killed, or stopping) still accepts connections for a moment, then drops them,
    and a daemon started in that moment takes it for a live one and leaves."""
    deadline = time.monotonic() + START_WAIT_S
    while True:
        sock = runtime.connect(paths.socket) or _start(paths, idle_exit_s, deadline)
        if sock is None:  # the daemon we started found another serving: connect to that one
            why = "the shared daemon did not come up"
        elif isinstance(sock, str):
            return sock
        else:
            try:  # within the deadline: a stopped daemon's socket still takes connections
                # (at least WELCOME_WAIT_S: the deadline may have passed while we were stopped)
                sock.settimeout(max(WELCOME_WAIT_S, deadline - time.monotonic()))
                sock.sendall(hello)
                if _welcomed(sock):
                    sock.settimeout(None)
                    return sock
                why = "the shared daemon hung up"
            except TimeoutError:
                pid = runtime.peer_pid(sock)
                sock.close()
                return (
                    f"the shared daemon (pid {pid or '?'}) takes connections but does not "
                    f"answer (stopped, or hung; `mlxd stop` ends it; see {paths.log})"
                )
            except OSError as exc:
                why = f"the shared daemon hung up: {exc}"
            sock.close()
        if time.monotonic() > deadline:
            return f"{why} (see {paths.log})"
        time.sleep(0.05)


def _welcomed(sock: socket.socket) -> bool:
    """Whether the daemon sent runtime.WELCOME (read to its end, nothing after it: the LSP
    frames that follow are the pump's); False when it hung up first. TimeoutError when it
    said nothing before the socket's timeout."""
    got = b""
    while len(got) < len(runtime.WELCOME):
        chunk = sock.recv(len(runtime.WELCOME) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == runtime.WELCOME


def _start(paths: runtime.Paths, idle_exit_s: float, deadline: float) -> socket.socket | str | None:
    """Start the daemon and connect: its connection, the reason it failed, or None when the
    new daemon left at once because another seemed to serve (try again). Forwarders racing
    to start one queue on a lock: the first starts it, the others find it serving."""
    import fcntl

    with open(paths.dir / "start.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if (sock := runtime.connect(paths.socket)) is not None:
                    return sock  # another forwarder started it
                if time.monotonic() > deadline:
                    return "another forwarder is still starting the shared daemon"
                time.sleep(0.05)
        if (sock := runtime.connect(paths.socket)) is not None:
            return sock
        try:
            child = start_daemon(paths, idle_exit_s)
        except OSError as exc:
            return f"could not start the shared daemon: {exc}"
        return _wait_for(paths, child, deadline)


def start_daemon(paths: runtime.Paths, idle_exit_s: float) -> subprocess.Popen[bytes]:
    """`mlxd daemon`, detached: its own session, no stdio of ours, stderr to its log."""
    with open(paths.log, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mlxd", "daemon", "--idle-exit-s", str(idle_exit_s)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd="/",
            env={**os.environ, runtime.RUNTIME_ENV: str(paths.dir)},  # absolute, as we use it
            start_new_session=True,
        )


def _wait_for(
    paths: runtime.Paths, child: subprocess.Popen[bytes], deadline: float
) -> socket.socket | str | None:
    """Connect once the started daemon listens. None when it left with 0 and nothing serves
    (it lost the start race, or took a daemon going away for a live one: try again); the
    reason when it failed or did not listen by the deadline."""
    while time.monotonic() < deadline:
        if (sock := runtime.connect(paths.socket)) is not None:
            return sock
        code = child.poll()
        if code == 0:
            return runtime.connect(paths.socket)
        if code is not None:
            return f"the shared daemon exited with {code} (see {paths.log})"
        time.sleep(0.05)
    return f"the shared daemon did not come up in {START_WAIT_S:.0f} s (see {paths.log})"
