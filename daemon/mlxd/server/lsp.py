"""The LSP server object: pygls' LanguageServer with mlxd's protocol class, the services of
app.py, and what the server sends on its own (status, model-load progress, error messages).

The handlers of each method are in handlers.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs
from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    default_converter,
    lsp_method,
)

from .. import __version__
from .. import protocol as P
from ..app import App, ConfigError, ConfigSources, Hooks, Process, Status
from ..transport import AdaptedProtocol

log = logging.getLogger(__name__)


def _converter() -> Any:
    """pygls' converter, except that params of methods lsprotocol does not know stay plain JSON
    (pygls would turn them into namedtuples); protocol.py validates them with msgspec."""
    converter = default_converter()

    def keep(obj: dict[str, Any], cls: type) -> Any:
        # JSON-RPC allows `params` to be absent; other unknown top-level keys are ignored.
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{"params": None, **{k: v for k, v in obj.items() if k in fields}})

    converter.register_structure_hook(JsonRPCRequestMessage, keep)
    converter.register_structure_hook(JsonRPCNotification, keep)
    return converter


class MlxdProtocol(AdaptedProtocol):
    @lsp_method(T.INITIALIZE)
    def lsp_initialize(self, params: T.InitializeParams):  # type: ignore[override]
        result = yield from super().lsp_initialize(params)
        self.use_lsp_line_model()
        result.capabilities.experimental = {
            "mlxd": {"version": P.VERSION, "methods": P.METHODS + P.NOTIFICATIONS}
        }
        return result

    def shape_error(self, error: Any) -> Any:
        """pygls puts a traceback (server paths, maybe secrets) into internal errors: the client
        gets a one-line message; the traceback stays in the log."""
        if error.code == P.INTERNAL_ERROR:
            first = (error.message or "").strip().splitlines()
            error = type(error)(
                code=error.code, message=f"Internal error: {first[-1] if first else ''}"
            )
        return error

    @lsp_method(T.EXIT)
    def lsp_exit(self, *args: Any) -> None:  # type: ignore[override]
        """End the serve loop instead of raising SystemExit inside it (pygls would lose the
        exit code): 0 after `shutdown`, 1 without it, as LSP says."""
        self.lsp_server.exit_code = 0 if self.shutting_down else 1
        if (stop := getattr(self.lsp_server, "stop_serving", None)) is not None:
            stop()


class MlxdServer(LanguageServer):
    def __init__(self, sources: ConfigSources, process: Process | None = None) -> None:
        """One LSP session; `process` is the state shared with the daemon's other sessions."""
        super().__init__(
            "mlxd",
            __version__,
            protocol_cls=MlxdProtocol,
            converter_factory=_converter,
            text_document_sync_kind=T.TextDocumentSyncKind.Incremental,
        )
        self.exit_code = 0
        self.initialize_seen = False  # requests before `initialize` get -32002
        self.initialized = False
        self.forwarded = False  # the client is a forwarder (cli/forward.py): it keeps state
        # A replay to a new daemon whose window saw `initialized`'s config problems already.
        self.quiet_start = False
        self.settings_changes = 0  # didChangeConfiguration handled
        hooks = Hooks(
            self.send_status,
            self.load_progress,
            self.call_soon,
            show_error=self.show_error,
        )
        self.app = App(sources, hooks, process)
        # The session's documents live in pygls' workspace, keyed by uris.key (documents.py).
        self.app.documents.store = lambda: self.workspace.text_documents
        self.stop_serving: Any = None  # set by transport's serve loop
        self._load_token: str | None = None
        self._load_pending: list[Any] | None = None
        self._load_create: asyncio.Future[None] | None = None  # kept: a task needs a reference
        self._loads = 0
        self.config_problems: list[str] = self.reload(None)[1]

    def reload(self, overlay: dict[str, Any] | None) -> tuple[bool, list[str]]:
        """Apply the config sources. Returns whether the new config took effect, and messages
        for the user (each names the key)."""
        try:
            problems = self.app.load_config(overlay)
        except ConfigError as exc:
            where = self.app.wording.settings if overlay is not None else "config"
            return False, [f"mlxd: invalid {where}, keeping the previous config: {exc}"]
        return True, [f"mlxd: {p}" for p in problems]

    def show_config_problems(self) -> None:
        """The config problems, at `initialized`: shown, or only logged when this is a replay
        whose window saw them before its shared daemon was replaced (quiet_start)."""
        for problem in self.config_problems:
            if self.quiet_start:
                log.info("%s (shown before the shared daemon was replaced)", problem)
            else:
                self.show_error(problem)
        self.quiet_start = False

    def tell_settings_in_force(self) -> None:
        """A forwarder's client: which settings are in force now (P.SETTINGS_IN_FORCE)."""
        if self.forwarded:
            params = {"settings": self.app.sources.init_options, "changes": self.settings_changes}
            self.protocol.notify(P.SETTINGS_IN_FORCE, params)

    # --- client notifications that do not belong to one request ------------------------------
    def call_soon(self, fn: Any) -> None:
        loop = getattr(self, "loop", None)
        if loop is None:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def send_status(self, status: Status) -> None:
        if self.initialized:  # nothing may be sent before the initialize response
            wire = P.Status(state=status.state, backends=status.backends, message=status.message)  # type: ignore[arg-type]
            self.protocol.notify(P.STATUS, P.to_wire(wire))

    def load_progress(self, kind: str, fraction: float, message: str) -> None:
        """Model loading as server-initiated work-done progress (when the client supports it).
        Nothing is reported on the token until the client has acknowledged its creation."""
        caps = self.protocol.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return
        pct = int(fraction * 100)
        if kind == "begin" and self._load_token is not None:
            kind = "report"  # the loader's own first step
        if kind == "begin":
            self._loads += 1
            token = self._load_token = f"mlxd/load/{self._loads}"
            self._load_pending = []
            begin = T.WorkDoneProgressBegin(
                title="mlxd", message=message, percentage=0, cancellable=True
            )
            self._load_create = asyncio.ensure_future(self._create_load_token(token, begin))
        elif self._load_token is not None:
            value: Any = (
                T.WorkDoneProgressReport(message=message, percentage=pct)
                if kind == "report"
                else T.WorkDoneProgressEnd(message=message)
            )
            if self._load_pending is None:
                self._send_load(self._load_token, value)
            else:
                self._load_pending.append(value)
            if kind == "end":
                self._load_token = None

    async def _create_load_token(self, token: str, begin: T.WorkDoneProgressBegin) -> None:
        """Ask the client for `token`, then begin. Not with create()'s callback: pygls cancels
        the pending request at `shutdown` (and a client may refuse it), and the callback then
        reads the future's result and concurrent.futures logs the exception as an ERROR."""
        try:
            await self.work_done_progress.create_async(token)
        except asyncio.CancelledError:
            return  # shutdown came first: nothing to report on
        except Exception as exc:  # the client refused the token: the load goes on unreported
            log.info("the client did not create progress token %s: %s", token, exc)
            return
        self._load_acked(token, begin)

    def _load_acked(self, token: str, begin: T.WorkDoneProgressBegin) -> None:
        self.work_done_progress.begin(token, begin)
        pending, self._load_pending = self._load_pending or [], None
        for value in pending:
            self._send_load(token, value)

    def _send_load(self, token: str, value: Any) -> None:
        if isinstance(value, T.WorkDoneProgressEnd):
            self.work_done_progress.end(token, value)
        else:
            self.work_done_progress.report(token, value)

    def show_error(self, message: str) -> None:
        self.window_show_message(T.ShowMessageParams(type=T.MessageType.Error, message=message))
