"""LSP framing, hardened: mlxd reads Content-Length frames itself instead of pygls' reader,
by the rules in frames.py (which the shared daemon's forwarder follows too).

pygls would allocate whatever Content-Length a client claims; here a body larger than MAX_BODY
is skipped in small pieces, never held in memory, and a header line longer than the buffer is
dropped. Each body goes to the dispatcher (dispatch.py). Also: serving stdio or TCP until EOF,
`exit` or the parent's death, and keeping stray prints off the protocol's stdout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, BinaryIO

from .. import protocol as P
from .. import runtime
from ..frames import CONTENT_LENGTH as _CONTENT_LENGTH
from ..frames import MAX_BODY, MAX_HEADER_LINE
from .dispatch import Dispatcher

log = logging.getLogger(__name__)


async def read_frames(reader: asyncio.StreamReader, dispatcher: Dispatcher) -> None:
    """Read Content-Length frames until EOF; each body goes to the dispatcher."""
    while True:
        length: int | None = None
        in_long_line = False  # the tail of a line dropped for its length is still to come
        while True:  # one header block
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # EOF
            except asyncio.LimitOverrunError as exc:
                # A line longer than the read buffer: drop what is buffered rather than grow
                # the buffer. Its tail, up to the newline, comes next and is dropped too: it
                # must not pass for the blank line that ends the header block.
                try:
                    await reader.readexactly(exc.consumed)
                except asyncio.IncompleteReadError:
                    return
                if not in_long_line:
                    log.warning("dropped an over-long header line")
                in_long_line = True
                continue
            if in_long_line:
                in_long_line = False
                continue
            if len(line) > MAX_HEADER_LINE:
                log.warning("dropped an over-long header line")
                continue
            if not line.strip():
                if length is None:
                    continue  # blank lines between frames, or a header block without length
                break
            if m := _CONTENT_LENGTH.search(line.strip()):
                length = int(m.group(1))
        if length > MAX_BODY:
            log.warning("skipping a %d-byte message (limit %d)", length, MAX_BODY)
            if not await _discard(reader, length):
                return
            dispatcher.error(
                None, P.INVALID_REQUEST, f"Invalid Request: message over {MAX_BODY} bytes"
            )
            continue
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return
        try:
            dispatcher.handle(body)
        except Exception:  # a bug in handling one message must not end the serve loop
            log.exception("failed to handle a message")


async def _discard(reader: asyncio.StreamReader, n: int) -> bool:
    while n > 0:
        chunk = await reader.read(min(n, 1 << 20))
        if not chunk:
            return False
        n -= len(chunk)
    return True


# --- running a server -------------------------------------------------------------------------
class _Writer:
    """pygls' writer interface over a binary stream (the protocol's private copy of stdout).
    A client that went away ends the serve loop instead of raising on every later write."""

    def __init__(self, out: BinaryIO, on_gone: Any) -> None:
        self.out = out
        self.on_gone = on_gone
        self.gone = False

    def write(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
            log.warning("the client closed the connection")
            self.on_gone()

    def close(self) -> None:
        pass  # the process is about to exit; closing here would race the last response


async def serve_stdio(server: Any, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve one client on stdin/stdout until EOF, `exit`, or the parent process dies."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEADER_LINE * 2)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    except ValueError:  # a regular file (e.g. a recorded session): feed it from a thread
        loop.run_in_executor(None, _pump_file, loop, reader, stdin)
    server.protocol.set_writer(
        _Writer(stdout, lambda: server.stop_serving and server.stop_serving())
    )
    await _serve(server, reader)


class _StreamWriter:
    """pygls' writer interface over an asyncio stream (a shared daemon's session socket). A
    peer that went away ends that session's serve loop, and only that one."""

    def __init__(self, writer: asyncio.StreamWriter, on_gone: Any) -> None:
        self.writer = writer
        self.on_gone = on_gone
        self.gone = False

    def write(self, data: bytes) -> None:
        if self.gone:
            return
        if self.writer.is_closing():
            self.gone = True
            log.warning("the client closed the connection")
            self.on_gone()
            return
        self.writer.write(data)

    def close(self) -> None:
        pass  # the session's owner closes the socket once the last response is out


async def serve_stream(
    server: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one client over an asyncio stream pair until EOF, `exit`, or the client's death."""
    server.protocol.set_writer(
        _StreamWriter(writer, lambda: server.stop_serving and server.stop_serving())
    )
    await _serve(server, reader, own_parent=False)


async def serve_tcp(server: Any, host: str, port: int) -> None:
    """Debugging transport: serve the first client that connects, then exit with it."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.protocol.set_writer(writer)
        try:
            await _serve(server, reader)
        finally:
            if not done.done():
                done.set_result(None)

    tcp = await asyncio.start_server(client, host, port, limit=MAX_HEADER_LINE * 2)
    log.warning("mlxd listening on %s:%d", host, port)
    async with tcp:
        await done


async def _serve(server: Any, reader: asyncio.StreamReader, own_parent: bool = True) -> None:
    """Until EOF, the `exit` notification (server.stop_serving), or the parent's death (the
    client's process when `own_parent` is False: a shared daemon's parent is not its client)."""
    exit_requested = asyncio.get_running_loop().create_future()
    server.stop_serving = lambda: exit_requested.done() or exit_requested.set_result(None)
    tasks = [
        asyncio.ensure_future(read_frames(reader, Dispatcher(server.protocol))),
        asyncio.ensure_future(_watch_parent(server, own_parent)),
        exit_requested,
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _watch_parent(server: Any, own_parent: bool = True, interval: float = 1.0) -> None:
    """An editor that dies without closing our stdin must not leave an orphan behind."""
    ppid = os.getppid()
    while True:
        await asyncio.sleep(interval)
        if own_parent and os.getppid() != ppid:
            server.end_reason = f"parent process {ppid} is gone"
            log.warning("%s; exiting", server.end_reason)
            return
        pid = getattr(server, "process_id", None)
        if pid and not runtime.alive(pid):
            server.end_reason = f"client process {pid} is gone"  # the shared daemon tells why
            log.warning("%s; exiting", server.end_reason)
            return


def _pump_file(loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader, f: BinaryIO) -> None:
    while chunk := f.read(1 << 16):
        loop.call_soon_threadsafe(reader.feed_data, chunk)
    loop.call_soon_threadsafe(reader.feed_eof)


def protect_stdout() -> BinaryIO:
    """Give the protocol a private copy of stdout and point fd 1 at stderr, so that a stray
    print (ours, a library's, or C code's) can never corrupt the LSP stream."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out
