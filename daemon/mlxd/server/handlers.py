"""The LSP surface of mlxd: lifecycle, document sync, and one short handler per method.

Each handler validates its params, calls one service in app.py, and streams or returns. Nothing
here knows HTTP or MLX.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import attrs
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    default_converter,
    lsp_method,
)

from . import __version__, uris
from . import protocol as P
from .app import (
    AllFailed,
    App,
    ConfigError,
    ConfigSources,
    Hooks,
    Outcome,
    UnknownBackend,
    UnknownModel,
)
from .transport import AdaptedProtocol

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
        result.capabilities.experimental = {"mlxd": {"version": P.VERSION, "methods": P.METHODS}}
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
    def __init__(self, sources: ConfigSources) -> None:
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
        hooks = Hooks(
            self.send_status,
            self.load_progress,
            self.call_soon,
            show_error=self.show_error,
            open_documents=self.open_documents,
        )
        self.app = App(sources, hooks)
        self.stop_serving: Any = None  # set by transport's serve loop
        self._load_token: str | None = None
        self._load_pending: list[Any] | None = None
        self._loads = 0
        self.config_problems: list[str] = self.reload(None)[1]

    def reload(self, overlay: dict[str, Any] | None) -> tuple[bool, list[str]]:
        """Apply the config sources. Returns whether the new config took effect, and messages
        for the user (each names the key)."""
        try:
            problems = self.app.load_config(overlay)
        except ConfigError as exc:
            where = "initializationOptions" if overlay is not None else "config"
            return False, [f"mlxd: invalid {where}, keeping the previous config: {exc}"]
        return True, [f"mlxd: {p}" for p in problems]

    def open_documents(self) -> list[tuple[str, str]]:
        """(uri, text) of every synced document (for the privacy rules on chat content)."""
        return [(d.uri, d.source) for d in self.workspace.text_documents.values()]

    # --- client notifications that do not belong to one request ------------------------------
    def call_soon(self, fn: Any) -> None:
        loop = getattr(self, "loop", None)
        if loop is None:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def send_status(self, status: P.Status) -> None:
        if self.initialized:  # nothing may be sent before the initialize response
            self.protocol.notify(P.STATUS, P.to_wire(status))

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
            self.work_done_progress.create(token, callback=lambda _: self._load_acked(token, begin))
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


def register(ls: MlxdServer) -> None:
    """Attach every feature to a server instance (one instance per process)."""

    @ls.feature(T.INITIALIZE)
    def initialize(ls: MlxdServer, params: T.InitializeParams) -> None:
        """Apply initializationOptions over the file config; answered at once."""
        ls.loop = asyncio.get_running_loop()
        ls.initialize_seen = True
        opts = _settings(params.initialization_options)
        if opts is None:
            ls.config_problems.append("mlxd: initializationOptions must be an object; ignored")
        elif opts:
            applied, ls.config_problems = ls.reload(opts)
            if applied:
                ls.app.sources.init_options = opts
        for problem in ls.config_problems:
            log.error("%s", problem)

    @ls.feature(T.INITIALIZED)
    def initialized(ls: MlxdServer, params: T.InitializedParams) -> None:
        """Report config problems, announce state, start the background model load."""
        ls.initialized = True
        for problem in ls.config_problems:
            ls.show_error(problem)
        ls.app.publish_status(force=True)
        ls.preload_task = asyncio.ensure_future(ls.app.preload())

    @ls.feature(T.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: MlxdServer, params: T.DidChangeConfigurationParams) -> None:
        """Reload: file + new settings (or the initializationOptions when none are sent)."""
        overlay = _settings(params.settings) or None
        applied, problems = ls.reload(overlay)
        for problem in problems:
            log.error("%s", problem)
            ls.show_error(problem)
        if applied and overlay is not None:
            ls.app.sources.init_options = overlay
        if ls.app.config.local.preload:
            asyncio.ensure_future(ls.app.preload())

    @ls.feature(T.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def progress_cancel(ls: MlxdServer, params: T.WorkDoneProgressCancelParams) -> None:
        """The user cancelled the model load progress: stop the loads (downloads) in flight."""
        if params.token == ls._load_token:
            log.info("load cancelled by the client: %s", ", ".join(ls.app.cancel_loads()))

    @ls.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: MlxdServer, params: T.DidCloseTextDocumentParams) -> None:
        """Stop the closed document's inline generation and forget its cached suggestions."""
        ls.app.inline.forget(uris.key(params.text_document.uri))

    @ls.feature(T.SHUTDOWN)
    def shutdown(ls: MlxdServer, params: Any) -> None:
        """pygls cancels in-flight requests; their generations stop at the next token."""
        log.info("shutdown requested")

    @ls.feature(P.CHAT)
    async def chat(ls: MlxdServer, params: Any) -> Any:
        """Chat, streamed as $/progress on the partialResultToken."""
        p = _parse(params, P.ChatParams)
        return await _generate(ls, ls.app.chat(p, _streamer(ls, p.partial_result_token)))

    @ls.feature(P.COMPLETE)
    async def complete(ls: MlxdServer, params: Any) -> Any:
        """Raw completion (FIM where the model supports it), streamed like chat."""
        p = _parse(params, P.CompleteParams)
        return await _generate(ls, ls.app.complete(p, _streamer(ls, p.partial_result_token)))

    @ls.feature(P.MODELS)
    def models(ls: MlxdServer, params: Any) -> Any:
        """Configured models and the default per request kind."""
        _parse(params, P.EmptyParams)
        return P.to_wire(ls.app.models())

    @ls.feature(P.STATS)
    def stats(ls: MlxdServer, params: Any) -> Any:
        """Diagnostic counters (inline cache hits, generations, KV reuse, upstream requests,
        memory, and the server's own bookkeeping, which a leak would make grow)."""
        _parse(params, P.EmptyParams)
        server = {
            "pendingRequests": len(ls.protocol.pending),
            "tasks": len(asyncio.all_tasks()),
            "pythonBlocks": sys.getallocatedblocks(),
        }
        return {**ls.app.stats(), "server": server}

    @ls.feature(P.SET_API_KEY)
    async def set_api_key(ls: MlxdServer, params: Any) -> Any:
        """Hold a key from the editor's secret store (in memory; keyring when persist)."""
        p = _parse(params, P.SetApiKeyParams)
        try:
            await ls.app.set_api_key(p)
        except ValueError as exc:
            raise JsonRpcInvalidParams(message=f"Invalid params: {exc}") from None
        except Exception as exc:  # e.g. a locked keyring; never echo the key
            raise JsonRpcException(
                code=P.REQUEST_FAILED, message=f"could not store the key: {type(exc).__name__}"
            ) from None
        return {}

    @ls.feature(T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionOptions())
    async def inline_completion(
        ls: MlxdServer, params: T.InlineCompletionParams
    ) -> T.InlineCompletionList:
        """Ghost text at the cursor of a synced document."""
        uri = uris.key(params.text_document.uri)
        docs = {uris.key(d.uri): d for d in ls.workspace.text_documents.values()}
        if uri not in docs:
            raise JsonRpcInvalidParams(
                message="Invalid params: textDocument.uri: not open (send textDocument/didOpen first)"
            )
        doc = docs[uri]
        sel = params.context.selected_completion_info
        items = await ls.app.inline_complete(
            doc.source,
            params.position.line,
            params.position.character,
            uri=uri,
            language=doc.language_id or "",
            encoding=_encoding(ls.workspace.position_encoding),
            selected=(sel.text, _range_tuple(sel.range)) if sel else None,
            open_documents=[(k, d.language_id or "", d.source) for k, d in docs.items()],
        )
        return T.InlineCompletionList(
            items=[
                T.InlineCompletionItem(
                    insert_text=item.insert_text,
                    range=T.Range(
                        T.Position(item.range[0], item.range[1]),
                        T.Position(item.range[2], item.range[3]),
                    ),
                )
                for item in items
            ]
        )


# --- helpers ----------------------------------------------------------------------------------
def _parse(params: Any, cls: type[P.P]) -> P.P:
    try:
        return P.parse(params, cls)
    except P.InvalidParams as exc:
        raise JsonRpcInvalidParams(message=f"Invalid params: {exc}") from None


def _streamer(ls: MlxdServer, token: P.ProgressToken | None):
    if token is None:
        return None

    def on_delta(text: str, backend: str) -> None:
        ls.progress(T.ProgressParams(token=token, value={"delta": text, "backend": backend}))

    return on_delta


async def _generate(ls: MlxdServer, work: Any) -> Any:
    try:
        outcome: Outcome = await work
    except UnknownBackend as exc:
        raise JsonRpcInvalidParams(message=f"Invalid params: backend: {exc}") from None
    except UnknownModel as exc:
        raise JsonRpcInvalidParams(message=f"Invalid params: model: {exc}") from None
    except AllFailed as exc:
        attempts = [
            {"backend": a.backend, "error": ls.app.keys.redact(a.error)} for a in exc.attempts
        ]
        raise JsonRpcException(
            code=P.REQUEST_FAILED, message=ls.app.keys.redact(str(exc)), data={"attempts": attempts}
        ) from None
    result = P.GenerationResult(
        text=outcome.text,
        backend=outcome.backend,
        model=outcome.model,
        finish_reason=outcome.finish_reason,  # type: ignore[arg-type]
        usage=P.Usage(outcome.prompt_tokens, outcome.completion_tokens),
        attempts=[P.Attempt(a.backend, ls.app.keys.redact(a.error)) for a in outcome.attempts],
        timings=P.Timings(outcome.first_token_ms, outcome.total_ms),
    )
    return P.to_wire(result)


def _settings(value: Any) -> dict[str, Any] | None:
    """Editor settings are the config itself or nested under "mlxd" (VS Code's section)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    inner = value.get("mlxd")
    return inner if isinstance(inner, dict) and len(value) == 1 else value


def _encoding(kind: Any) -> str:
    """The negotiated position encoding as 'utf-16' | 'utf-8' | 'utf-32'."""
    return str(getattr(kind, "value", kind) or "utf-16")


def _range_tuple(r: T.Range) -> tuple[int, int, int, int]:
    return (r.start.line, r.start.character, r.end.line, r.end.character)
