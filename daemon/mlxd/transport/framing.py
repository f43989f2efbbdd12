"""LSP framing and dispatch, hardened: mlxd reads frames itself instead of pygls' reader.

pygls' own loop drops a request whose params do not structure (no response at all), answers
malformed JSON with silence, and would allocate whatever Content-Length a client claims. Here
every request gets exactly one response, malformed input gets the JSON-RPC error the spec names,
and a body larger than MAX_BODY is skipped in small pieces, never held in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from typing import Any, BinaryIO

import cattrs
from lsprotocol import types as T
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import JsonRPCProtocol

from . import protocol as P

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
MAX_HEADER_LINE = 8 * 1024
_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)\s*$", re.IGNORECASE)
# A `\uD800`-`\uDFFF` escape in the raw body: the only way JSON can carry a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SNAKE = re.compile(r"_([a-z])")


class Dispatcher:
    """Turns raw frame bodies into pygls messages, answering what pygls would not."""

    def __init__(self, rpc: JsonRPCProtocol) -> None:
        self.rpc = rpc

    def error(self, msg_id: Any, code: int, message: str) -> None:
        self.rpc._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    def _serves(self, method: str) -> bool:
        fm = self.rpc.fm
        return method in fm.builtin_features or method in fm.features

    def handle(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            self.error(None, P.PARSE_ERROR, f"Parse error: {exc}")
            return
        if not isinstance(data, dict):
            self.error(None, P.INVALID_REQUEST, "Invalid Request: expected a JSON object")
            return
        if "params" in data and _SURROGATE_ESCAPE.search(body):
            # JSON may escape a lone UTF-16 surrogate (an editor's JS string of a broken file
            # does): no valid text, and the tokenizer rejects it. Same as a bad UTF-8 byte
            # decoded with errors="replace": U+FFFD, one code unit, so positions still hold.
            # Only in params: the id must come back as it was sent.
            data["params"] = _replace_surrogates(data["params"])
        msg_id = data.get("id")
        has_id = "id" in data
        if has_id and (isinstance(msg_id, bool) or not isinstance(msg_id, int | str)):
            self.error(None, P.INVALID_REQUEST, "Invalid Request: id must be an integer or string")
            return
        if data.get("jsonrpc") != "2.0":
            if has_id:
                self.error(msg_id, P.INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"')
            return
        method = data.get("method")
        if "method" in data and not isinstance(method, str):
            if has_id:
                self.error(msg_id, P.INVALID_REQUEST, "Invalid Request: method must be a string")
            return
        if method is None and not has_id:
            log.warning("ignoring a message with neither method nor id")
            return
        if method not in (None, "initialize", "exit") and not _initialize_seen(self.rpc):
            if has_id:
                self.error(msg_id, P.SERVER_NOT_INITIALIZED, "Server not initialized")
            return
        if method is not None and has_id and self.rpc._shutdown and method != "exit":
            self.error(msg_id, P.INVALID_REQUEST, "Invalid Request: the server is shutting down")
            return
        if method is not None and has_id:
            # pygls would take a request carrying `error` for an error response and stay silent.
            if "error" in data:
                self.error(msg_id, P.INVALID_REQUEST, "Invalid Request: a request has no error")
                return
            # A notification method sent with an id would be run as a notification and never
            # answered; as a request it does not exist (`exit` still ends the process).
            if method != "exit" and _is_notification(method):
                self.error(
                    msg_id, P.METHOD_NOT_FOUND, f"Method not found: {method} is a notification"
                )
                return
            # Unknown before its params are looked at: pygls would check an LSP method's params
            # first (-32602 for a method that is not served at all).
            if not self._serves(method):
                self.error(msg_id, P.METHOD_NOT_FOUND, f"Method not found: {method}")
                return
            # Two requests in flight under one id could not be told apart, nor cancelled apart.
            if msg_id in self.rpc._request_futures:
                self.error(msg_id, P.INVALID_REQUEST, f"Invalid Request: id {msg_id!r} is in use")
                return
        if method in P.METHODS and not has_id:
            log.warning("ignoring %s sent as a notification (no id, so no answer)", method)
            return
        if method == T.CANCEL_REQUEST and not _valid_cancel(data.get("params")):
            log.warning("ignoring $/cancelRequest without a valid id")
            return
        try:
            message = self.rpc.structure_message(data)
        except JsonRpcInvalidParams as exc:
            detail = _describe(exc.__cause__)
            if method is not None and has_id:
                self.error(msg_id, P.INVALID_PARAMS, f"Invalid params for {method}: {detail}")
            else:
                log.warning("ignoring %s with invalid params: %s", method or "response", detail)
            return
        except Exception as exc:  # a message pygls cannot shape at all
            log.warning("cannot structure %s: %s", method or "message", exc)
            if method is not None and has_id:
                self.error(msg_id, P.INVALID_REQUEST, f"Invalid Request: {method}")
            return
        futures = self.rpc._request_futures
        before = set(futures) if not has_id else None
        try:
            self.rpc.handle_message(message)
        except Exception:
            log.exception("failed to handle %s", method)
            if method is not None and has_id:
                self.error(msg_id, -32603, f"Internal error handling {method}")
        if before is not None:
            _forget_when_done(futures, set(futures) - before)


def _forget_when_done(futures: dict[Any, Any], keys: set[Any]) -> None:
    """pygls files the future of a notification run by a generator handler (didOpen,
    didChange, ... are) under a fresh uuid and never takes it out again: one leaked future per
    keystroke. Take out those a notification added, once they are done."""
    for key in keys:
        fut = futures.get(key)
        if fut is None:
            continue
        if fut.done():
            del futures[key]
        else:
            fut.add_done_callback(lambda _, key=key: futures.pop(key, None))


def _initialize_seen(rpc: JsonRPCProtocol) -> bool:
    return getattr(rpc._server, "initialize_seen", True)


def _is_notification(method: str) -> bool:
    types = T.METHOD_TO_TYPES.get(method)
    return types is not None and types[0].__name__.endswith("Notification")


def _valid_cancel(params: Any) -> bool:
    if not isinstance(params, dict):
        return False
    msg_id = params.get("id")
    return isinstance(msg_id, int | str) and not isinstance(msg_id, bool)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _describe(exc: BaseException | None) -> str:
    """cattrs' validation errors as 'position.line: expected int' lines, with the wire's
    camelCase names (`context.triggerKind`, not lsprotocol's `context.trigger_kind`)."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        notes = cattrs.transform_error(exc, path="$")
        return "; ".join(_camel_path(n) for n in notes)
    return str(exc) if exc else "invalid params"


def _camel_path(note: str) -> str:
    text, sep, path = note.rpartition(" @ ")
    if not sep:
        return note
    path = path.replace("$.params.", "").replace("$.params", "params")
    return f"{text} @ {_SNAKE.sub(lambda m: m.group(1).upper(), path)}"


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


async def _serve(server: Any, reader: asyncio.StreamReader) -> None:
    """Until EOF, the `exit` notification (server.stop_serving), or the parent's death."""
    exit_requested = asyncio.get_running_loop().create_future()
    server.stop_serving = lambda: exit_requested.done() or exit_requested.set_result(None)
    tasks = [
        asyncio.ensure_future(read_frames(reader, Dispatcher(server.protocol))),
        asyncio.ensure_future(_watch_parent(server)),
        exit_requested,
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _watch_parent(server: Any, interval: float = 1.0) -> None:
    """An editor that dies without closing our stdin must not leave an orphan behind."""
    ppid = os.getppid()
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != ppid:
            log.warning("parent process %d is gone; exiting", ppid)
            return
        pid = getattr(server, "process_id", None)
        if pid and not _alive(pid):
            log.warning("client process %d is gone; exiting", pid)
            return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
