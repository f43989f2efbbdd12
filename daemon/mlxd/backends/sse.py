"""Incremental Server-Sent Events parser: bytes in, events out.

Follows the WHATWG "event stream interpretation" rules: lines end with CRLF, LF or CR; a line
starting with `:` is a comment (keep-alive); `field: value` drops one leading space of the value;
`data` lines accumulate joined with "\\n"; a blank line dispatches the event (an event without
data is not dispatched); an event still open at end of stream is discarded.

Lines are split on raw bytes before decoding: UTF-8 never uses the bytes 0x0A/0x0D inside a
multi-byte sequence, so a character split across two network chunks is decoded whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlxd.errors import ProtocolError

MAX_EVENT_BYTES = 1 << 20  # 1 MiB: far above any real token chunk, well below memory trouble

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" unless the stream named it
    data: str
    id: str | None = None  # the last event id seen so far on this stream


class SSEParser:
    """Feed network chunks with `feed`; each call returns the events completed by that chunk."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = bytearray()  # bytes of the line not yet terminated
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._first_line = True
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buf += chunk
        out: list[SSEEvent] = []
        pos = 0
        end = len(self._buf)
        while pos < end:
            m = _EOL.search(self._buf, pos)
            if m is None:
                break
            line = bytes(self._buf[pos : m.start()])
            pos = m.end()
            if m.group() == b"\r" and pos == end:
                self._skip_lf = True  # CR at the chunk's end: an LF may follow in the next one
            ev = self._line(line)
            if ev is not None:
                out.append(ev)
        del self._buf[:pos]
        if len(self._buf) + self._data_bytes > self._max:
            raise ProtocolError(f"event stream: an event exceeds {self._max} bytes")
        return out

    def _line(self, raw: bytes) -> SSEEvent | None:
        if self._first_line:
            self._first_line = False
            raw = raw.removeprefix(_BOM)
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None  # comment / keep-alive
        name, sep, value = raw.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"data":
            self._data.append(text)
            self._data_bytes += len(value) + 1
            if self._data_bytes > self._max:
                raise ProtocolError(f"event stream: an event exceeds {self._max} bytes")
        elif name == b"event":
            self._event = text
        elif name == b"id":
            if "\0" not in text:
                self._last_id = text
        elif name == b"retry":
            if text.isdigit():
                self.retry_ms = int(text)
        # Any other field name is ignored, as the spec says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        ev = SSEEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._data = []
        self._data_bytes = 0
        self._event = ""
        return ev
