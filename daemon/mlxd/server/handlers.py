"""The LSP surface of mlxd: one short module-level handler per method, in jedi-language-server's
shape; the JSON-RPC errors they answer with are in wire_errors.py.

Each handler validates its params, calls one service in app.py, and streams or returns. Nothing
here knows HTTP or MLX.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from lsprotocol import types as T
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from .. import protocol as P
from ..app import (
    Message,
    Outcome,
    Request,
)
from .lsp import MlxdServer
from .progress_stream import ProgressStream
from .wire_errors import ERRORS, wire_error

log = logging.getLogger(__name__)


# --- handlers: one per method, each a module-level function of (server, params) ----------


def initialize(ls: MlxdServer, params: T.InitializeParams) -> None:
    """Apply initializationOptions over the file config; answered at once."""
    ls.loop = asyncio.get_running_loop()
    ls.initialize_seen = True
    ls.app.set_client(params.client_info.name if params.client_info else None)
    opts = _settings(params.initialization_options)
    if opts is None:
        ls.config_problems.append(f"mlxd: {ls.app.wording.settings} must be an object; ignored")
    elif opts:
        applied, ls.config_problems = ls.reload(opts)
        if applied:
            ls.app.sources.init_options = opts
    for problem in ls.config_problems:  # a replay's were logged before: INFO this time
        log.log(logging.INFO if ls.quiet_start else logging.ERROR, "%s", problem)
    ls.tell_settings_in_force()


def initialized(ls: MlxdServer, params: T.InitializedParams) -> None:
    """Report config problems, announce state, start the background model load."""
    ls.initialized = True
    ls.show_config_problems()
    ls.app.publish_status(force=True)
    ls.preload_task = asyncio.ensure_future(ls.app.preload())


def did_change_configuration(ls: MlxdServer, params: T.DidChangeConfigurationParams) -> None:
    """Reload: file + new settings (or the initializationOptions when none are sent)."""
    overlay = _settings(params.settings) or None
    applied, problems = ls.reload(overlay)
    for problem in problems:
        log.error("%s", problem)
        ls.show_error(problem)
    if applied and overlay is not None:
        ls.app.sources.init_options = overlay
    ls.settings_changes += 1
    ls.tell_settings_in_force()
    if ls.app.config.local.preload:
        asyncio.ensure_future(ls.app.preload())


def progress_cancel(ls: MlxdServer, params: T.WorkDoneProgressCancelParams) -> None:
    """The user cancelled the model load progress: stop the loads (downloads) in flight."""
    if params.token == ls._load_token:
        log.info("load cancelled by the client: %s", ", ".join(ls.app.cancel_loads()))


def did_open(ls: MlxdServer, params: T.DidOpenTextDocumentParams) -> None:
    """pygls has stored the document: the inline engine may warm the KV cache for it."""
    uri, doc = ls.app.documents.get(params.text_document.uri)
    if doc is not None:
        ls.app.inline_opened(uri, doc.language_id or "", doc.source, ls.app.documents.listing())


def did_change(ls: MlxdServer, params: T.DidChangeTextDocumentParams) -> None:
    """pygls has applied the edits: background inline work they made stale is dropped."""
    uri, doc = ls.app.documents.get(params.text_document.uri)
    if doc is None:
        return
    last = params.content_changes[-1] if params.content_changes else None
    edit = None
    if isinstance(last, T.TextDocumentContentChangePartial):  # where the last edit went
        edit = (last.range.start.line, last.range.start.character, last.text)
    encoding = _encoding(ls.workspace.position_encoding)
    documents = ls.app.documents.listing  # called only when edits settle
    ls.app.inline_changed(uri, doc.language_id or "", doc.source, edit, encoding, documents)


def _on_document(ls: MlxdServer, params: Any, cls: type[Any], method: str) -> Any:
    """(params as `cls`, uri, document) of a notification about an open document, or None:
    bad params or an unknown document are logged and dropped (a notification has no answer)."""
    try:
        p = P.parse(params, cls)
    except P.InvalidParams as exc:
        log.warning("ignoring %s with invalid params: %s", method, exc)
        return None
    uri, doc = ls.app.documents.get(p.text_document.uri)
    if doc is None:
        log.debug("ignoring %s for a document that is not open", method)
        return None
    return p, uri, doc


def did_move_cursor(ls: MlxdServer, params: Any) -> None:
    """mlxd/didMoveCursor: the inline engine warms the prompt where the cursor rests."""
    if (got := _on_document(ls, params, P.CursorParams, P.DID_MOVE_CURSOR)) is None:
        return
    p, uri, doc = got
    position = (p.position.line, p.position.character)
    encoding = _encoding(ls.workspace.position_encoding)
    documents = ls.app.documents.listing  # called only once the cursor rests
    ls.app.inline_moved(uri, doc.language_id or "", doc.source, position, encoding, documents)


def did_copy(ls: MlxdServer, params: Any) -> None:
    """mlxd/didCopy: text copied from an open document joins the inline engine's neighbour
    snippets."""
    if (got := _on_document(ls, params, P.CopyParams, P.DID_COPY)) is None:
        return
    p, uri, doc = got
    ls.app.inline_copied(uri, doc.language_id or "", p.text)


def did_close(ls: MlxdServer, params: T.DidCloseTextDocumentParams) -> None:
    """Stop the closed document's inline generation and forget its cached suggestions."""
    ls.app.inline.forget(ls.app.documents.close(params.text_document.uri))


def shutdown(ls: MlxdServer, params: Any) -> None:
    """pygls cancels in-flight requests; their generations stop at the next token. Background
    inline work stops too, and none starts after it (a warm-up due after a didOpen or a cursor
    rest just before it would still use the model, a shared daemon's too)."""
    log.info("shutdown requested")
    ls.app.inline.ahead.close()


async def chat(ls: MlxdServer, params: Any) -> Any:
    """Chat, streamed as $/progress on the partialResultToken."""
    p = _parse(ls, params, P.ChatParams)
    token = p.partial_result_token
    req = Request(
        kind="chat",
        messages=[Message(m.role, m.content) for m in p.messages],
        max_tokens=p.max_tokens,
        temperature=p.temperature if p.temperature is not None else 0.0,
        stop=list(p.stop),
    )
    return await _generate(ls, p, req, token, reasoning=True)


async def complete(ls: MlxdServer, params: Any) -> Any:
    """Raw completion (FIM where the model supports it), streamed like chat."""
    p = _parse(ls, params, P.CompleteParams)
    req = Request(
        kind="complete",
        prefix=p.prefix,
        suffix=p.suffix,
        language=p.language,
        max_tokens=p.max_tokens,
        temperature=p.temperature if p.temperature is not None else 0.0,
        stop=list(p.stop),
    )
    return await _generate(ls, p, req, p.partial_result_token)


def models(ls: MlxdServer, params: Any) -> Any:
    """Configured models and the default per request kind."""
    _parse(ls, params, P.EmptyParams)
    models, defaults = ls.app.models()
    listed = [P.ModelInfo(name=m.name, backend=m.backend, loaded=m.loaded) for m in models]
    return P.to_wire(P.ModelsResult(models=listed, defaults=defaults))


def stats(ls: MlxdServer, params: Any) -> Any:
    """Diagnostic counters (inline cache hits, generations, KV reuse, upstream requests,
    memory, and the server's own bookkeeping, which a leak would make grow)."""
    _parse(ls, params, P.EmptyParams)
    server = {
        "pid": os.getpid(),  # the shared daemon's when this session is one of its sessions
        "sessions": len(ls.app.process.sessions),
        "pendingRequests": len(ls.protocol.pending),
        "tasks": len(asyncio.all_tasks()),
        "pythonBlocks": sys.getallocatedblocks(),
    }
    return {**ls.app.stats(), "server": server}


async def set_api_key(ls: MlxdServer, params: Any) -> Any:
    """Hold a key from the editor's secret store (in memory; keyring when persist)."""
    p = _parse(ls, params, P.SetApiKeyParams)
    try:
        await ls.app.set_api_key(p.backend, p.api_key, p.persist)
    except ValueError as exc:
        raise JsonRpcInvalidParams(message=f"Invalid params: {exc}") from None
    except Exception as exc:  # e.g. a locked keyring; never echo the key
        raise JsonRpcException(
            code=P.REQUEST_FAILED, message=f"could not store the key: {type(exc).__name__}"
        ) from None
    return {}


async def inline_completion(
    ls: MlxdServer, params: T.InlineCompletionParams
) -> T.InlineCompletionList:
    """Ghost text at the cursor of a synced document."""
    uri, doc = ls.app.documents.get(params.text_document.uri)
    if doc is None:
        if ls.app.documents.was_closed(uri):  # closed since the client asked
            return T.InlineCompletionList(items=[])
        raise JsonRpcInvalidParams(
            message="Invalid params: textDocument.uri: not open (send textDocument/didOpen first)"
        )
    sel = params.context.selected_completion_info
    items = await ls.app.inline_complete(
        doc.source,
        params.position.line,
        params.position.character,
        uri=uri,
        language=doc.language_id or "",
        encoding=_encoding(ls.workspace.position_encoding),
        selected=(sel.text, _range_tuple(sel.range)) if sel else None,
        open_documents=ls.app.documents.listing(),
        invoked=params.context.trigger_kind == T.InlineCompletionTriggerKind.Invoked,
    )
    items = [] if ls.app.documents.get(uri)[1] is None else items  # closed meanwhile: none
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


# Every method mlxd serves: (LSP method, its registration options, the handler).
FEATURES: list[tuple[str, Any, Callable[..., Any]]] = [
    (T.INITIALIZE, None, initialize),
    (T.INITIALIZED, None, initialized),
    (T.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
    (T.WINDOW_WORK_DONE_PROGRESS_CANCEL, None, progress_cancel),
    (T.TEXT_DOCUMENT_DID_OPEN, None, did_open),
    (T.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (T.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
    (P.DID_MOVE_CURSOR, None, did_move_cursor),
    (P.DID_COPY, None, did_copy),
    (T.SHUTDOWN, None, shutdown),
    (P.CHAT, None, chat),
    (P.COMPLETE, None, complete),
    (P.MODELS, None, models),
    (P.STATS, None, stats),
    (P.SET_API_KEY, None, set_api_key),
    (T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionOptions(), inline_completion),
]


def register(ls: MlxdServer) -> None:
    """Attach every feature to a server instance (one instance per process)."""
    for method, options, handler in FEATURES:
        ls.feature(method, options)(handler)


# --- helpers ----------------------------------------------------------------------------------
def _parse(ls: MlxdServer, params: Any, cls: type[P.P]) -> P.P:
    try:
        return P.parse(params, cls)
    except P.InvalidParams as exc:
        raise ERRORS[P.InvalidParams](ls, exc) from None


async def _generate(
    ls: MlxdServer,
    p: P.ChatParams | P.CompleteParams,
    req: Request,
    token: P.ProgressToken | None,
    reasoning: bool = False,
) -> Any:
    """Route a generation request, its text streamed on `token` (`reasoning`: the reasoning
    too, apart), and turn its Outcome (or error) into the wire's."""
    stream = None if token is None else ProgressStream(ls, token)
    work = ls.app.generate(
        req,
        model=p.model,
        backend=p.backend,
        document=p.text_document.uri if p.text_document else None,
        on_delta=None if stream is None else stream.on("delta"),
        on_reasoning=None if stream is None or not reasoning else stream.on("reasoning"),
    )
    try:
        outcome: Outcome = await work
    except Exception as exc:
        if (error := wire_error(ls, exc)) is None:
            raise
        raise error from None
    finally:
        if stream is not None:
            stream.flush()  # every piece before the response
    result = P.GenerationResult(
        text=outcome.text,
        backend=outcome.backend,
        model=outcome.model,
        finish_reason=outcome.finish_reason,  # type: ignore[arg-type]
        usage=P.Usage(outcome.prompt_tokens, outcome.completion_tokens),
        attempts=[P.Attempt(a.backend, ls.app.keys.redact(a.error)) for a in outcome.attempts],
        timings=P.Timings(outcome.first_token_ms, outcome.total_ms),
        reasoning=outcome.reasoning,
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
