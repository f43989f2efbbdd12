"""LSP base-protocol framing rules, and an incremental splitter that follows them. Standard
library only: the shared daemon's forwarder splits both directions with `Splitter`, the
daemon's own reader (transport/framing.py) reads stdio and sockets by the same rules, so a
message is the same message on either side of a forwarder.

The rules (hardened, beyond the spec's CRLF): header lines end at LF (CRLF or a lone LF), a
blank line ends a header block that named a Content-Length (one without is dropped), a header
line over MAX_HEADER_LINE is dropped up to its newline, a body over MAX_BODY is skipped in
pieces and never held.
"""

from __future__ import annotations

import re

MAX_BODY = 64 * 1024 * 1024
MAX_HEADER_LINE = 8 * 1024
CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)\s*$", re.IGNORECASE)


class Splitter:
    """Bytes in, message bodies out. `feed` returns each body whole, or None for one skipped
    for its size (the reader answers it with an error, as the daemon does). Holds at most one
    header line or one body (MAX_BODY) besides the bytes of the current `feed`."""

    def __init__(self, max_body: int | None = MAX_BODY) -> None:
        """`max_body`: the largest body kept (None: any; for the daemon's own frames, whose
        answers may be larger than any request, e.g. a long answer whose non-ASCII text
        JSON escapes to six bytes a character)."""
        self.max_body = max_body
        self._buf = bytearray()
        self._length: int | None = None  # of the header block being read
        self._body: int | None = None  # bytes of the body still to come
        self._skip = 0  # bytes of an over-long body still to drop
        self._long_line = False  # dropping a header line up to its newline

    def feed(self, data: bytes) -> list[bytes | None]:
        self._buf += data
        out: list[bytes | None] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list[bytes | None]) -> bool:
        """Consume one unit (a line, a body, a skipped piece); False when more bytes are needed."""
        buf = self._buf
        if self._skip:
            n = min(self._skip, len(buf))
            del buf[:n]
            self._skip -= n
            return self._skip == 0
        if self._body is not None:
            if len(buf) < self._body:
                return False
            out.append(bytes(buf[: self._body]))
            del buf[: self._body]
            self._body = None
            return True
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_HEADER_LINE:  # no newline yet: drop it, and its tail later
                buf.clear()
                self._long_line = True
            return False
        line = bytes(buf[:end]).strip()
        del buf[: end + 1]
        if self._long_line or end > MAX_HEADER_LINE:
            self._long_line = False
            return True
        if line:
            if m := CONTENT_LENGTH.search(line):
                self._length = int(m.group(1))
            return True
        length, self._length = self._length, None
        if length is None:
            return True  # blank lines between frames, or a header block without a length
        if self.max_body is not None and length > self.max_body:
            self._skip = length
            out.append(None)
        else:
            self._body = length
        return True
