"""What a forwarder keeps of its LSP session so that it survives the shared daemon's death:
the requests in flight (they fail with -32803 when the daemon dies) and what a new daemon needs
to serve the same window (initialize, initialized, the settings in force, the keys the daemon
took, each open document's didOpen with its current text and version: synced.py applies the
edits as they come). Only what is in force is replayed: a new daemon acts on each message it is
given (shows its errors, loads its model), and the window has seen those of the past.

The standard library and mlxd's pure-text modules only (uris; prompts at the first didOpen):
the forwarder imports it. Frames are split by frames.py's rules (the daemon's own);
bodies are forwarded unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from .. import uris
from ..runtime import SESSION_ENDED, SETTINGS_IN_FORCE

REQUEST_FAILED = -32803
OWN_ID = "mlxd-forwarder-"  # ids of the forwarder's own replayed requests


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


# What a request in flight is answered with when the daemon died / was stopped (forward.py).
DIED = (
    "mlxd: the shared daemon stopped while handling this request; a new one serves this window, "
    "send the request again"
)


def stopped(reason: str) -> str:
    return f"mlxd: the shared daemon was stopped ({reason}) while handling this request"


class Replay:
    def __init__(self) -> None:
        self.inflight: dict[Any, str] = {}  # the client's requests not yet answered: id -> method
        self.initialize: dict[str, Any] | None = None
        self.initialized: dict[str, Any] | None = None
        # The settings in force, as the daemon last said (runtime.SETTINGS_IN_FORCE; None: it
        # has not), and the changes sent since that it has not yet handled. A later invalid
        # or empty change leaves the earlier in force, so the last one sent is not the one
        # in force (attack #19 finding 1), and replaying all of them acts on each again
        # (attack finding C: old errors shown again, abandoned models loaded).
        self.in_force: dict[str, Any] | None = None
        self.changes: list[dict[str, Any]] = []
        self._handled = 0  # changes the daemon on this connection has handled
        self.keys: dict[str, dict[str, Any]] = {}  # backend -> the setApiKey the daemon took
        self._key_asked: dict[str, dict[str, Any]] = {}  # id -> a setApiKey not yet answered
        self.documents: dict[str, Document] = {}  # by uris.key, as the daemon keys them
        self.encoding = "utf-16"  # the position encoding the daemon chose at `initialize`
        self.exited = False  # the client sent `exit`: the daemon hanging up is the end
        # The daemon ended the session on purpose ({"exitCode", "reason"}, runtime.SESSION_ENDED):
        # its hang-up that follows is the end, not its death.
        self.ended: dict[str, Any] | None = None
        self.own: set[str] = set()  # replayed requests whose responses are not forwarded
        # Work-done progress the daemon began and has not ended (its `$/progress`): ended for
        # the client when the daemon dies, which no new daemon does (its tokens are its own).
        self.progress: dict[str, Any] = {}
        self._n = 0

    def from_client(self, body: bytes) -> None:
        msg = _load(body)
        if msg is None:
            return
        method, params = msg.get("method"), msg.get("params")
        if method is None:
            return  # the client's response to a server request
        if "id" in msg and _valid_id(msg["id"]):  # else the daemon refuses it (id null)
            self.inflight[_key(msg["id"])] = method
        # A malformed message is forwarded as it is (the daemon answers it) and kept for no
        # replay: nothing here may raise on it.
        item = params.get("textDocument") if isinstance(params, dict) else None
        uri = item.get("uri") if isinstance(item, dict) else None
        uri = uris.key(uri) if isinstance(uri, str) else None
        if method == "initialize":
            self.initialize = msg
        elif method == "initialized":
            self.initialized = msg
        elif method == "exit":
            self.exited = True
        elif method == "workspace/didChangeConfiguration":
            self.changes.append(msg)
        elif method == "mlxd/setApiKey" and isinstance(params, dict) and "id" in msg:
            self._key_asked[_key(msg["id"])] = msg  # in force once the daemon says so
        elif method == "textDocument/didOpen" and uri is not None:
            self.documents[uri] = Document(msg)
        elif method == "textDocument/didChange" and uri in self.documents:
            self.documents[uri].change(params, self.encoding)  # type: ignore[arg-type]
        elif method == "textDocument/didClose" and uri is not None:
            self.documents.pop(uri, None)

    def from_daemon(self, body: bytes) -> bool:
        """Whether to forward this message to the client (not a response to a replayed
        request)."""
        msg = _load(body)
        method = msg.get("method") if msg is not None else None
        if method == SESSION_ENDED:
            params = msg.get("params")  # type: ignore[union-attr]
            self.ended = params if isinstance(params, dict) else {}
            return False
        if method == SETTINGS_IN_FORCE:
            self._settings_in_force(msg.get("params"))  # type: ignore[union-attr]
            return False
        if method == "$/progress":
            self._progress(msg.get("params"))  # type: ignore[union-attr]
        if msg is None or method is not None or "id" not in msg:
            return True
        key = _key(msg["id"])
        if (asked := self._key_asked.pop(key, None)) is not None and "result" in msg:
            self.keys[str(asked["params"].get("backend"))] = asked
        if isinstance(msg["id"], str) and msg["id"] in self.own:
            self.own.discard(msg["id"])
            return False
        if self.inflight.pop(key, None) == "initialize":
            self._learn_encoding(msg.get("result"))
        return True

    def _settings_in_force(self, params: Any) -> None:
        settings = params.get("settings") if isinstance(params, dict) else None
        handled = params.get("changes") if isinstance(params, dict) else None
        if not isinstance(settings, dict) or not isinstance(handled, int):
            return
        self.in_force = settings
        del self.changes[: max(0, handled - self._handled)]  # handled: not replayed as such
        self._handled = max(self._handled, handled)

    def _learn_encoding(self, result: Any) -> None:
        caps = result.get("capabilities") if isinstance(result, dict) else None
        encoding = caps.get("positionEncoding") if isinstance(caps, dict) else None
        if isinstance(encoding, str):
            self.encoding = encoding

    def _progress(self, params: Any) -> None:
        token = params.get("token") if isinstance(params, dict) else None
        value = params.get("value") if isinstance(params, dict) else None
        kind = value.get("kind") if isinstance(value, dict) else None
        if isinstance(token, int | str) and kind in ("begin", "end"):
            if kind == "begin":
                self.progress[_key(token)] = token
            else:
                self.progress.pop(_key(token), None)

    def progress_ended(self, reason: str) -> list[bytes]:
        """A work-done `end` for each progress the daemon began and never ended (it died):
        else the editor shows it for ever (a model load at 40%), and a new daemon's token of
        the same name meets a token still open."""
        value = {"kind": "end", "message": reason}
        out = [
            json.dumps(
                {"jsonrpc": "2.0", "method": "$/progress", "params": {"token": t, "value": value}}
            )
            for t in self.progress.values()
        ]
        self.progress.clear()
        return [frame(b.encode()) for b in out]

    def failed(self, reason: str, *, replayed: bool = True) -> list[bytes]:
        """An error response for each request in flight when the daemon died (`replayed`: a
        new daemon is given the window, and answers its `initialize`) or ended the session."""
        out = []
        for key, method in list(self.inflight.items()):
            if method == "initialize" and replayed:  # no editor sends it again
                continue
            error = {"code": REQUEST_FAILED, "message": reason}
            out.append(json.dumps({"jsonrpc": "2.0", "id": json.loads(key), "error": error}))
            del self.inflight[key]
        return [frame(b.encode()) for b in out]

    @property
    def initialize_answered(self) -> bool:
        """Whether the client has had the answer to its initialize (and seen what `initialized`
        showed: a new daemon need not show the same config problems again)."""
        return self.initialize is not None and _key(self.initialize.get("id")) not in self.inflight

    def replay(self) -> list[bytes]:
        """The message bodies that make a new daemon serve this window as the old one did."""
        if self.initialize is None:
            return []
        answered = _key(self.initialize.get("id")) not in self.inflight
        initialize, params = self.initialize, self.initialize.get("params")
        if self.in_force is not None and isinstance(params, dict):
            # The settings in force ride on it: what the window's changes left, their errors
            # and their models not again.
            initialize = {
                **initialize,
                "params": {**params, "initializationOptions": self.in_force},
            }
        # Still unanswered: replayed under its own id, so the client gets the new daemon's answer.
        msgs = [self._own(initialize) if answered else initialize]
        if self.initialized is not None:
            msgs.append(self.initialized)
        msgs += self.changes  # sent, never handled: the new daemon handles them (counts anew)
        self._handled = 0
        msgs += [self._own(m) for m in self.keys.values()]
        # Unanswered at the crash (failed -32803 to the client, which may not send it again):
        # the new daemon is asked, and its answer decides whether the key is in force.
        asked, self._key_asked = self._key_asked, {}
        for m in asked.values():
            own = self._own(m)
            self._key_asked[_key(own["id"])] = own
            msgs.append(own)
        msgs += [doc.opened() for doc in self.documents.values()]
        return [json.dumps(m).encode() for m in msgs]

    def _own(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        own_id = f"{OWN_ID}{self._n}"
        self.own.add(own_id)
        return {**msg, "id": own_id}


class Document:
    """An open document as a new daemon must be given it: its didOpen with the current text
    (synced.py applies each edit as it comes) and version."""

    def __init__(self, did_open: dict[str, Any]) -> None:
        from .synced import SyncedText  # the first didOpen: not on the way to `initialize`

        params = did_open["params"]
        item = params["textDocument"]
        # str() as the daemon's converter reads it (a missing text: the daemon refuses it).
        self.text = SyncedText(str(item["text"]) if "text" in item else "")
        self.version = item.get("version")
        # The message without its text: the text lives (and changes) in self.text only.
        bare = {k: v for k, v in item.items() if k != "text"}
        self.did_open = {**did_open, "params": {**params, "textDocument": bare}}

    def change(self, params: dict[str, Any], encoding: str) -> None:
        """Apply a didChange as the daemon does: all its edits, or none when the daemon's
        converter refuses the message (it then drops the whole notification)."""
        parsed = _parse_change(params)
        if parsed is None:
            return
        self.version, edits = parsed
        for edit in edits:
            if isinstance(edit, str):  # the whole document
                self.text.replace(edit)
            else:
                self.text.edit(*edit, encoding)

    def opened(self) -> dict[str, Any]:
        item = {**self.did_open["params"]["textDocument"], "text": self.text.text}
        if self.version is not None:
            item["version"] = self.version
        return {**self.did_open, "params": {**self.did_open["params"], "textDocument": item}}


UINTEGER_MAX = 2**31 - 1  # LSP's uinteger: the daemon's converter refuses a position above


def _uinteger(value: Any) -> int:
    """A position number as lsprotocol's converter reads it (int(), then 0..UINTEGER_MAX);
    ValueError when it refuses it (1e400 reads as inf: OverflowError, a ValueError too)."""
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(value) from None
    if not 0 <= n <= UINTEGER_MAX:
        raise ValueError(value)
    return n


def _parse_change(params: dict[str, Any]) -> tuple[int, list[Any]] | None:
    """(version, edits) of a didChange's params, each edit the new whole text or (start,
    end, text) with start/end as {"line", "character"}; None when the daemon refuses the
    notification (a version, a position or a change it cannot read), as it then applies none
    of its edits. Texts are str() as the converter makes them."""
    try:
        version, changes = int(params["textDocument"]["version"]), params["contentChanges"]
        edits: list[Any] = []
        for c in changes if isinstance(changes, list) else [None]:
            if "range" not in c:
                edits.append(str(c["text"]))
                continue
            r = c["range"]
            start, end = (
                {"line": _uinteger(r[e]["line"]), "character": _uinteger(r[e]["character"])}
                for e in ("start", "end")
            )
            if "rangeLength" in c:
                _uinteger(c["rangeLength"])
            edits.append((start, end, str(c["text"])))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return version, edits


def _valid_id(msg_id: Any) -> bool:
    """A request id the daemon answers under (transport/dispatch.py's rule): an integer or a
    string. It refuses any other once, with id null; a float such as 1e400 (inf) would also
    be written back as `Infinity`, which is not JSON."""
    return isinstance(msg_id, str) or (isinstance(msg_id, int) and not isinstance(msg_id, bool))


def _key(msg_id: Any) -> str:
    return json.dumps(msg_id)  # 1 and "1" are two ids


def _load(body: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(body)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None
