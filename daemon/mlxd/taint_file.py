"""Rule 1's memory (taint.py): digests of messages that travelled with an excluded document ->
that document's URI, kept per user in a file so that it outlives sessions and processes
(`mlxd stop`, the editor restarting `mlxd serve`, Reload Window, in-process serving too).

The file is `taint` in the per-user runtime directory (runtime.py: 0700), mode 0600, one line
per remembered message: "<sha256 hex digest> <uri>\\n". Only digests, never text. Each new entry
is appended with one write (O_APPEND: writers in several processes do not interleave), after a
newline if the file's last line was left unfinished (a full disk, a crash); a reader
that misses a digest re-reads what was appended since (another window or process may have
written). Past 2 * limit lines the file is rewritten with the `limit` most recent entries (a
temporary file in the same directory, renamed over it), under an exclusive flock of the
directory (appends hold it shared). A file that is a symlink, not ours, or open to group or
others is never used again; nor is a directory not ours: the memory is then this process's only
(logged once at INFO). Any other failure (a full disk, a directory made unusable for a while) is
logged once too and tried again at the next read or write, with the entries not yet written.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from . import runtime

log = logging.getLogger(__name__)
FILE_NAME = "taint"
_LINE = re.compile(r"([0-9a-f]{64}) (\S+)")
_SPACE = re.compile(r"\s")
# O_NONBLOCK: a FIFO planted at the path must not block the open (it is refused as not a
# regular file after it); a regular file ignores the flag.
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Remembered:
    """An LRU map digest -> URI of at most `limit` entries, backed by `path` once attached."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: OrderedDict[str, str] = OrderedDict()
        self.path: Path | None = None
        self._read: tuple[int, int] = (0, 0)  # (inode, bytes) of the file read so far
        self._lines = 0  # lines in the file as far as we know
        self._pending: list[bytes] = []  # entries a failed write did not put in the file
        self._told = False  # the failure to use the file was logged

    def attach(self, path: Path) -> None:
        """Keep the memory in `path` from now on, and load what it holds. An unusable file or
        directory leaves the memory in this process only."""
        self.path = path
        with self._usable("use"):
            runtime.ensure_dir(path.parent)
            self._refresh()

    def get(self, key: str) -> str | None:
        """The URI remembered for `key` (now the most recently used), or None."""
        if key not in self.seen and self.path is not None:
            with self._usable("read"):
                self._refresh()
        uri = self.seen.get(key)
        if uri is not None:
            self.seen.move_to_end(key)
        return uri

    def put(self, key: str, uri: str) -> None:
        """Remember `key` -> `uri`; a new entry goes to the file too."""
        new = self.seen.get(key) != uri
        self._set(key, uri)
        if new and self.path is not None:
            # A URI the client sent with raw whitespace: escaped, as a URI would have it.
            spelled = _SPACE.sub(lambda m: quote(m.group()), uri)
            with self._usable("write"):
                self._append(f"{key} {spelled}\n".encode())

    def _set(self, key: str, uri: str) -> None:
        self.seen[key] = uri
        self.seen.move_to_end(key)
        while len(self.seen) > self.limit:
            self.seen.popitem(last=False)

    @contextlib.contextmanager
    def _usable(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (OSError, runtime.UnsafeRuntimeDir) as exc:
            if not self._told:
                log.info("cannot %s the taint file (kept in memory for now): %s", doing, exc)
                self._told = True
            if isinstance(exc, runtime.UnsafeRuntimeDir):
                self.path = None  # not ours alone: never again

    @contextlib.contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        assert self.path is not None
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    def _open(self, flags: int) -> int:
        assert self.path is not None
        fd = os.open(self.path, flags | _OPEN, 0o600)
        try:
            runtime.check_private(self.path, os.fstat(fd), stat.S_IFREG)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refresh(self) -> None:
        """Read what the file gained since the last read (all of it if it was replaced)."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            st = os.fstat(fd)
            inode, done = self._read
            if (inode, done) == (st.st_ino, st.st_size):
                return
            if inode != st.st_ino or st.st_size < done:
                done, self._lines = 0, 0  # rewritten: read it whole
            os.lseek(fd, done, os.SEEK_SET)
            data = os.read(fd, st.st_size - done) if st.st_size > done else b""
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._read = (st.st_ino, done + end)
        for line in data[:end].decode(errors="replace").splitlines():
            self._lines += 1
            if m := _LINE.fullmatch(line):
                self._set(m.group(1), m.group(2))

    def _append(self, line: bytes) -> None:
        self._pending = [*self._pending, line][-self.limit :]
        with self._locked(fcntl.LOCK_SH):
            fd = self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                line = b"".join(self._pending)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A line cut short (a full disk, a crash, an edit) would swallow ours: end
                    # it first. Two writers may both do it: an empty line is skipped.
                    line = b"\n" + line
                if os.write(fd, line) == len(line):
                    self._pending = []
            finally:
                os.close(fd)
        self._refresh()  # counts the file's lines: ours and other writers'
        if self._lines > 2 * self.limit:
            self._rewrite()

    def _rewrite(self) -> None:
        """Keep the `limit` most recent entries (ours and every other writer's)."""
        assert self.path is not None
        with self._locked(fcntl.LOCK_EX):
            self._refresh()
            if self._lines <= 2 * self.limit:
                return  # another writer has rewritten it
            body = "".join(f"{k} {u}\n" for k, u in self.seen.items()).encode()
            fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}-", dir=self.path.parent)  # 0600
            try:
                try:
                    os.write(fd, body)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._read = (os.stat(self.path, follow_symlinks=False).st_ino, len(body))
            self._lines = len(self.seen)
