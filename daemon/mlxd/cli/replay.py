"""What a forwarder keeps of its LSP session so that it survives the shared daemon's death:
the requests in flight (they fail with -32803 when the daemon dies) and what a new daemon needs
to serve the same window (initialize, initialized, every settings change, the keys handed over,
each open document's didOpen and the edits since).

Standard library only (the forwarder imports it). Frames are split by their Content-Length;
bodies are forwarded unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..runtime import SESSION_ENDED

REQUEST_FAILED = -32803
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
OWN_ID = "mlxd-forwarder-"  # ids of the forwarder's own replayed requests
MAX_EDITS = 10_000  # per document; past this a document is not replayed (the editor reopens it)


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Frames:
    """Split a byte stream into message bodies. A header block without a length is dropped."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            m = _LENGTH.search(bytes(self.buf[:end]))
            if m is None:
                del self.buf[: end + 4]
                continue
            size = int(m.group(1))
            if len(self.buf) < end + 4 + size:
                break
            out.append(bytes(self.buf[end + 4 : end + 4 + size]))
            del self.buf[: end + 4 + size]
        return out


class Replay:
    def __init__(self) -> None:
        self.inflight: dict[Any, str] = {}  # the client's requests not yet answered: id -> method
        self.initialize: dict[str, Any] | None = None
        self.initialized: dict[str, Any] | None = None
        # Every settings change, in order: a later invalid or empty one leaves the earlier in
        # force, so the last alone could turn a window's cloud back on (attack #19 finding 1).
        self.settings: list[dict[str, Any]] = []
        self.keys: dict[str, dict[str, Any]] = {}  # backend -> its mlxd/setApiKey request
        self.documents: dict[str, list[dict[str, Any]]] = {}  # uri -> didOpen, didChange...
        self.exited = False  # the client sent `exit`: the daemon hanging up is the end
        # The daemon ended the session on purpose ({"exitCode", "reason"}, runtime.SESSION_ENDED):
        # its hang-up that follows is the end, not its death.
        self.ended: dict[str, Any] | None = None
        self.own: set[str] = set()  # replayed requests whose responses are not forwarded
        self._n = 0

    def from_client(self, body: bytes) -> None:
        msg = _load(body)
        if msg is None:
            return
        method, params = msg.get("method"), msg.get("params")
        if method is None:
            return  # the client's response to a server request
        if "id" in msg:
            self.inflight[_key(msg["id"])] = method
        uri = params.get("textDocument", {}).get("uri") if isinstance(params, dict) else None
        if method == "initialize":
            self.initialize = msg
        elif method == "initialized":
            self.initialized = msg
        elif method == "exit":
            self.exited = True
        elif method == "workspace/didChangeConfiguration":
            self.settings.append(msg)
        elif method == "mlxd/setApiKey" and isinstance(params, dict):
            self.keys[str(params.get("backend"))] = msg
        elif method == "textDocument/didOpen" and isinstance(uri, str):
            self.documents[uri] = [msg]
        elif method == "textDocument/didChange" and uri in self.documents:
            edits = self.documents[uri]
            edits.append(msg)
            if len(edits) > MAX_EDITS:
                del self.documents[uri]
        elif method == "textDocument/didClose" and isinstance(uri, str):
            self.documents.pop(uri, None)

    def from_daemon(self, body: bytes) -> bool:
        """Whether to forward this message to the client (not a response to a replayed
        request)."""
        msg = _load(body)
        if msg is not None and msg.get("method") == SESSION_ENDED:
            params = msg.get("params")
            self.ended = params if isinstance(params, dict) else {}
            return False
        if msg is None or "method" in msg or "id" not in msg:
            return True
        key = _key(msg["id"])
        if isinstance(msg["id"], str) and msg["id"] in self.own:
            self.own.discard(msg["id"])
            return False
        self.inflight.pop(key, None)
        return True

    def failed(self, reason: str) -> list[bytes]:
        """An error response for each request in flight when the daemon died."""
        out = []
        for key in list(self.inflight):
            error = {"code": REQUEST_FAILED, "message": reason}
            out.append(json.dumps({"jsonrpc": "2.0", "id": json.loads(key), "error": error}))
        self.inflight.clear()
        return [frame(b.encode()) for b in out]

    def replay(self) -> list[bytes]:
        """The message bodies that make a new daemon serve this window as the old one did."""
        if self.initialize is None:
            return []
        msgs = [self._own(self.initialize)]
        if self.initialized is not None:
            msgs.append(self.initialized)
        msgs += self.settings
        msgs += [self._own(m) for m in self.keys.values()]
        for edits in self.documents.values():
            msgs += edits
        return [json.dumps(m).encode() for m in msgs]

    def _own(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        own_id = f"{OWN_ID}{self._n}"
        self.own.add(own_id)
        return {**msg, "id": own_id}


def _key(msg_id: Any) -> str:
    return json.dumps(msg_id)  # 1 and "1" are two ids


def _load(body: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(body)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None
