"""The one place mlxd touches pygls' private attributes, so that a pygls upgrade breaks here.

`AdaptedProtocol` is the LSP protocol class mlxd's server builds on; everything else (the
dispatcher, the server, the CLI, the synced documents) uses the public names below or pygls'
public API instead of pygls internals.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pygls.protocol import LanguageServerProtocol

from .. import protocol as P
from .documents import LSPWorkspace


class AdaptedProtocol(LanguageServerProtocol):
    """pygls' LanguageServerProtocol with public names for what mlxd needs of its insides."""

    def send_data(self, data: dict[str, Any]) -> None:
        """Write one JSON-RPC message as it is (e.g. an error pygls would not send)."""
        self._send_data(data)

    @property
    def pending(self) -> dict[Any, asyncio.Future[Any]]:
        """Requests in flight (and notifications run by generator handlers), by id."""
        return self._request_futures

    @property
    def shutting_down(self) -> bool:
        """Whether the client has sent `shutdown`."""
        return self._shutdown

    @property
    def lsp_server(self) -> Any:
        """The LanguageServer this protocol serves."""
        return self._server

    @property
    def initialize_seen(self) -> bool:
        return getattr(self._server, "initialize_seen", True)

    def serves(self, method: str) -> bool:
        """Whether a handler (pygls' own or one of ours) is registered for `method`."""
        return method in self.fm.builtin_features or method in self.fm.features

    def use_lsp_line_model(self) -> None:
        """Synced documents split lines as LSP does (\\n, \\r\\n, \\r) and are keyed by
        `uris.key` (documents.py). Call once, after `initialize` made the workspace."""
        ws = self.workspace
        folders = list(ws.folders.values())
        self._workspace = LSPWorkspace(ws.root_uri, ws._sync_kind, folders, ws.position_encoding)

    def shape_error(self, error: Any) -> Any:
        """Hook: the ResponseError actually sent for a failed request (default: as it is)."""
        return error

    def fail_pending(self, reason: str | None = None) -> None:
        """Cancel the requests in flight (their work stops at its next step). pygls answers a
        cancelled request -32800, the answer to the client's own `$/cancelRequest`; with a
        `reason` (the server ends the session itself: `mlxd stop`, SIGTERM) each is answered
        -32803 with it instead, so the client can tell its cancel from the server's end."""
        failing: dict[Any, str] = self.__dict__.setdefault("_mlxd_failing", {})
        for msg_id, fut in list(self.pending.items()):
            if reason is not None and not fut.done():
                failing[msg_id] = reason
            fut.cancel()

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if error is not None:
            reason = self.__dict__.get("_mlxd_failing", {}).pop(msg_id, None)
            if reason is not None and error.code == P.REQUEST_CANCELLED:
                error = type(error)(code=P.REQUEST_FAILED, message=reason)
            error = self.shape_error(error)
        super()._send_response(msg_id, result, error)
