"""The shared-daemon forwarder's ends toward the editor (cli/forward.py's `pump`): reading
its stdin and writing its stdout, where a failure means the editor has gone, not a crash."""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time

PARENT_CHECK_S = 1.0  # how often the forwarder checks that the editor that started it lives


class Editor:
    """The forwarder's stdout. An editor that closed it (a window reloaded while a chat streams)
    has gone as surely as one that closed stdin: nothing more is written, and `gone` says so
    (before: EPIPE escaped as a traceback and exit status 1). A pipe or socket is made
    non-blocking while the forwarder runs: a write to an editor that stops reading waits for
    room in PARENT_CHECK_S steps, checking that the editor lives (a blocked write never came
    back to the loop that checks: an orphan when the editor died with the pipe held open)."""

    def __init__(self, fd: int, parent: int) -> None:
        self.fd, self.parent = fd, parent
        self.gone = False
        self.deadline: float | None = None  # monotonic: once the editor's EOF came, wait no later
        out, err = _stat(fd), _stat(2)
        mode = out.st_mode if out else 0
        # Not when stderr is the same pipe (`2>&1`): the flag is the open file's, and stderr's
        # writes to a full pipe would be cut short.
        same = out and err and (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)
        self.restore = (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and os.get_blocking(fd)
        self.restore = self.restore and not same
        if self.restore:
            os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.gone:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # full: the editor reads later, unless it has gone
                while not self.gone and not select.select([], [self.fd], [], self.wait_s())[1]:
                    self.gone = self.late() or os.getppid() != self.parent
            except OSError:  # EPIPE, ECONNRESET...: the editor's end reads nothing any more
                self.gone = True

    def late(self) -> bool:
        """Whether the grace after the editor's EOF (`deadline`) is over."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait_s(self) -> float:
        """How long to wait for the next event: until the next check of the parent, or the
        deadline, whichever is first."""
        if self.deadline is None:
            return PARENT_CHECK_S
        return max(0.0, min(PARENT_CHECK_S, self.deadline - time.monotonic()))

    def close(self) -> None:
        if self.restore:
            with contextlib.suppress(OSError):
                os.set_blocking(self.fd, True)


def _stat(fd: int) -> os.stat_result | None:
    try:
        return os.fstat(fd)
    except OSError:
        return None


def read(fd: int) -> bytes | None:
    """What the editor sent; b"" at its EOF, or when its end failed (ECONNRESET: stdin and
    stdout one socket, closed with an answer unread); None: nothing after all."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:  # stdin and stdout one socket, made non-blocking by Editor
        return None
    except OSError:
        return b""
