"""LSP dispatch rules: every request gets exactly one response, and malformed input the JSON-RPC
error the spec names.

pygls' own loop drops a request whose params do not structure (no response at all), answers
malformed JSON with silence, takes a request carrying `error` for a response, and runs a
notification method sent with an id without answering it. The Dispatcher applies the rules
below in order, each one a method that answers (or drops) the message it stops, and hands what
passes them all to pygls.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import cattrs
from lsprotocol import types as T
from pygls.exceptions import JsonRpcInvalidParams

from .. import protocol as P
from .pygls_adapter import AdaptedProtocol

log = logging.getLogger(__name__)

# A `\uD800`-`\uDFFF` escape in the raw body: the only way JSON can carry a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SNAKE = re.compile(r"_([a-z])")


class Dispatcher:
    """Turns raw frame bodies into pygls messages, answering what pygls would not."""

    def __init__(self, rpc: AdaptedProtocol) -> None:
        self.rpc = rpc

    def error(self, msg_id: Any, code: int, message: str) -> None:
        self.rpc.send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    def handle(self, body: bytes) -> None:
        data = self._parse(body)
        if data is None:
            return
        msg = _Message(data)
        if self._bad_shape(msg) or self._bad_state(msg) or self._bad_request(msg):
            return
        if self._ignored(msg):
            return
        message = self._structure(msg)
        if message is not None:
            self._run(msg, message)

    def _reply(self, msg: _Message, code: int, message: str) -> bool:
        """Answer a request with an error (a notification gets none); the message is done."""
        if msg.has_id:
            self.error(msg.id, code, message)
        return True

    def _parse(self, body: bytes) -> dict[str, Any] | None:
        """A JSON object, or None once -32700 / -32600 is sent."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            self.error(None, P.PARSE_ERROR, f"Parse error: {exc}")
            return None
        if not isinstance(data, dict):
            self.error(None, P.INVALID_REQUEST, "Invalid Request: expected a JSON object")
            return None
        if "params" in data and _SURROGATE_ESCAPE.search(body):
            # JSON may escape a lone UTF-16 surrogate (an editor's JS string of a broken file
            # does): no valid text, and the tokenizer rejects it. Same as a bad UTF-8 byte
            # decoded with errors="replace": U+FFFD, one code unit, so positions still hold.
            # Only in params: the id must come back as it was sent.
            data["params"] = _replace_surrogates(data["params"])
        return data

    def _bad_shape(self, msg: _Message) -> bool:
        """The envelope: id type, `jsonrpc`, `method` type, neither method nor id."""
        if msg.has_id and (isinstance(msg.id, bool) or not isinstance(msg.id, int | str)):
            self.error(None, P.INVALID_REQUEST, "Invalid Request: id must be an integer or string")
            return True
        if msg.data.get("jsonrpc") != "2.0":
            return self._reply(msg, P.INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"')
        if "method" in msg.data and not isinstance(msg.method, str):
            return self._reply(msg, P.INVALID_REQUEST, "Invalid Request: method must be a string")
        if msg.method is None and not msg.has_id:
            log.warning("ignoring a message with neither method nor id")
            return True
        return False

    def _bad_state(self, msg: _Message) -> bool:
        """The lifecycle: nothing before `initialize`, no request after `shutdown`."""
        if msg.method not in (None, "initialize", "exit") and not self.rpc.initialize_seen:
            return self._reply(msg, P.SERVER_NOT_INITIALIZED, "Server not initialized")
        if msg.is_request and self.rpc.shutting_down and msg.method != "exit":
            return self._reply(
                msg, P.INVALID_REQUEST, "Invalid Request: the server is shutting down"
            )
        return False

    def _bad_request(self, msg: _Message) -> bool:
        """A request pygls would misread or leave unanswered."""
        if not msg.is_request:
            return False
        method = msg.method
        # pygls would take a request carrying `error` for an error response and stay silent.
        if "error" in msg.data:
            return self._reply(msg, P.INVALID_REQUEST, "Invalid Request: a request has no error")
        # A notification method sent with an id would be run as a notification and never
        # answered; as a request it does not exist (`exit` still ends the process).
        if method != "exit" and _is_notification(method):
            return self._reply(
                msg, P.METHOD_NOT_FOUND, f"Method not found: {method} is a notification"
            )
        # Unknown before its params are looked at: pygls would check an LSP method's params
        # first (-32602 for a method that is not served at all).
        if not self.rpc.serves(method):
            return self._reply(msg, P.METHOD_NOT_FOUND, f"Method not found: {method}")
        # Two requests in flight under one id could not be told apart, nor cancelled apart.
        if msg.id in self.rpc.pending:
            return self._reply(msg, P.INVALID_REQUEST, f"Invalid Request: id {msg.id!r} is in use")
        return False

    def _ignored(self, msg: _Message) -> bool:
        """Notifications that cannot be acted on: an mlxd request without an id, a cancel
        without a valid id."""
        if msg.method in P.METHODS and not msg.has_id:
            log.warning("ignoring %s sent as a notification (no id, so no answer)", msg.method)
            return True
        if msg.method == T.CANCEL_REQUEST and not _valid_cancel(msg.data.get("params")):
            log.warning("ignoring $/cancelRequest without a valid id")
            return True
        return False

    def _structure(self, msg: _Message) -> Any:
        """The pygls message, or None once -32602 / -32600 is sent (or the message dropped)."""
        method = msg.method
        try:
            return self.rpc.structure_message(msg.data)
        except JsonRpcInvalidParams as exc:
            detail = _describe(exc.__cause__)
            if msg.is_request:
                self.error(msg.id, P.INVALID_PARAMS, f"Invalid params for {method}: {detail}")
            else:
                log.warning("ignoring %s with invalid params: %s", method or "response", detail)
        except Exception as exc:  # a message pygls cannot shape at all
            log.warning("cannot structure %s: %s", method or "message", exc)
            if msg.is_request:
                self.error(msg.id, P.INVALID_REQUEST, f"Invalid Request: {method}")
        return None

    def _run(self, msg: _Message, message: Any) -> None:
        futures = self.rpc.pending
        before = set(futures) if not msg.has_id else None
        try:
            self.rpc.handle_message(message)
        except Exception:
            log.exception("failed to handle %s", msg.method)
            if msg.is_request:
                self.error(msg.id, -32603, f"Internal error handling {msg.method}")
        if before is not None:
            _forget_when_done(futures, set(futures) - before)


class _Message:
    """The parts of a decoded JSON-RPC message the rules look at."""

    __slots__ = ("data", "has_id", "id", "is_request", "method")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.id = data.get("id")
        self.has_id = "id" in data
        self.method = data.get("method")
        self.is_request = self.method is not None and self.has_id


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


def _is_notification(method: str) -> bool:
    if method in P.NOTIFICATIONS:
        return True
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
