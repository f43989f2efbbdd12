"""The forwarder's frame splitter (mlxd/frames.py) reads a byte stream as the daemon's own reader
(transport/framing.read_frames) does: same bodies, same skipped ones, whatever the chunking.
Before, the forwarder split at CRLFCRLF only and held any length a client claimed (attack on the
shared daemon by default, finding K): LF-only headers got no answer, an endless Content-Length
grew it by the stream's size, a short length swallowed the next request."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlxd.frames import MAX_HEADER_LINE, Splitter
from mlxd.transport.framing import read_frames


class Collect:
    """The daemon reader's dispatcher, recording what it is handed."""

    def __init__(self) -> None:
        self.out: list[bytes | None] = []

    def handle(self, body: bytes) -> None:
        self.out.append(body)

    def error(self, msg_id: Any, code: int, message: str) -> None:
        self.out.append(None)


def daemon_reads(data: bytes) -> list[bytes | None]:
    async def run() -> list[bytes | None]:
        reader = asyncio.StreamReader(limit=1 << 16)
        reader.feed_data(data)
        reader.feed_eof()
        seen = Collect()
        await read_frames(reader, seen)  # type: ignore[arg-type]
        return seen.out

    return asyncio.run(run())


def split(data: bytes, sizes: list[int]) -> list[bytes | None]:
    s, out, at = Splitter(), [], 0
    for n in sizes:
        out += s.feed(data[at : at + n])
        at += n
    return out + s.feed(data[at:])


def test_lf_only_headers_are_a_frame_as_for_the_daemon() -> None:
    data = b"Content-Length: 2\n\n{}Content-Length: 3\r\n\r\n[1]"
    assert split(data, [5, 7]) == daemon_reads(data) == [b"{}", b"[1]"]


def test_an_endless_length_is_skipped_without_holding_it() -> None:
    s = Splitter()
    assert s.feed(b"Content-Length: %d\r\n\r\n" % (10**30)) == [None]
    chunk = b"x" * (1 << 20)
    for _ in range(128):  # 128 MiB of it
        assert s.feed(chunk) == []
        assert len(s._buf) == 0  # nothing held


def test_a_short_length_loses_only_its_own_message() -> None:
    """A body 10 bytes shorter than its bytes: the rest reads as headers; a Content-Length in
    it must not make the splitter wait for a gigabyte and swallow the next request."""
    tail = b"Content-Length: 999999999 xx"  # no newline: a header line to drop
    data = b"Content-Length: 2\r\n\r\n{}" + tail + b"\r\n\r\n" + b"Content-Length: 2\r\n\r\n[]"
    assert split(data, [3]) == daemon_reads(data) == [b"{}", b"[]"]


def test_an_over_long_header_line_is_dropped_up_to_its_newline() -> None:
    data = b"X: " + b"a" * (MAX_HEADER_LINE * 3) + b"\r\nContent-Length: 2\r\n\r\n{}"
    assert split(data, [100, MAX_HEADER_LINE + 7]) == [b"{}"]


frames = st.lists(
    st.tuples(
        st.binary(max_size=40),
        st.sampled_from([b"\r\n", b"\n"]),
        st.booleans(),  # an extra header line
        st.booleans(),  # the body's length claimed right, or 3 too many (the next one eaten)
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(0, 50), max_size=20), st.binary(max_size=30))
def test_any_stream_reads_as_the_daemon_reads_it(items, sizes, junk) -> None:
    data = junk.replace(b"\n", b"")  # noise before the first frame, on one line
    data += b"\n" if data else b""
    for body, eol, extra, right in items:
        head = b"Content-Length: %d" % (len(body) + (0 if right else 3)) + eol
        if extra:
            head += b"Content-Type: application/vscode-jsonrpc; charset=utf-8" + eol
        data += head + eol + body
    assert split(data, sizes) == daemon_reads(data)
