"""How a forwarder (forward.py) reaches the shared daemon: connect, or start it detached and
connect, send the window's hello and wait for the daemon's welcome (runtime.WELCOME), within
START_WAIT_S; and how often it may start one again when daemon after daemon dies under its
window (`Restarts`: backoff, then in-process). Standard library and runtime.py only, as
forward.py: the forwarder imports it on its way to `initialize`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from .. import runtime

START_WAIT_S = 30.0  # a cold daemon imports pygls, msgspec, aiohttp and MLX first
WELCOME_WAIT_S = 5.0  # the least time a daemon that took the connection has to welcome it
RETRY_S = 0.05  # the first pause between tries; it doubles up to MAX_RETRY_S
MAX_RETRY_S = 2.0
# A daemon that dies this soon after it was given the window's state (the hello, then the
# replay) died of it, or of something as lasting: after CRASH_LOOP_DEATHS such deaths in a
# row the window is served in-process (a crash loop costs that many starts, not one every
# 50 ms for START_WAIT_S); after twice as many the in-process servers died of it too.
SHORT_LIVED_S = 10.0
CRASH_LOOP_DEATHS = 3


class Restarts:
    """The deaths in a row of the servers given one window's state, each within
    SHORT_LIVED_S of being given it (a server that lived longer resets the count).

        restarts.given()        # a server was given the window's state (connected)
        n = restarts.died()     # it died: the count, 0 after a long life
        time.sleep(restarts.pause_s())   # 0 for the first death, then 50 ms doubling to 2 s
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since = clock()
        self.deaths = 0

    def given(self) -> None:
        self.since = self.clock()

    def died(self) -> int:
        short = self.clock() - self.since < SHORT_LIVED_S
        self.deaths = self.deaths + 1 if short else 0
        return self.deaths

    def pause_s(self) -> float:
        """How long to wait before the next start: a single death (kill -9) is replaced at
        once; a crash loop is slowed down."""
        return 0.0 if self.deaths <= 1 else min(MAX_RETRY_S, RETRY_S * 2 ** (self.deaths - 2))


def connect(paths: runtime.Paths, idle_exit_s: float, hello: bytes) -> socket.socket | str:
    """A daemon's connection with `hello` sent, starting the daemon when none serves; the
    reason when none can be had within START_WAIT_S. Tried again until then: a daemon that is
    going away (killed, or stopping) still accepts connections for a moment, then drops them,
    and a daemon started in that moment takes it for a live one and leaves. The pause between
    tries doubles (RETRY_S to MAX_RETRY_S): a daemon that leaves at once, every time, is
    started a dozen times in START_WAIT_S, not 600."""
    deadline, pause = time.monotonic() + START_WAIT_S, RETRY_S
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
        time.sleep(pause)
        pause = min(MAX_RETRY_S, 2 * pause)


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
            [sys.executable, "-P", "-m", "mlxd", "daemon", "--idle-exit-s", str(idle_exit_s)],
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
