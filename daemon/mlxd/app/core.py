"""One LSP session's services behind the LSP surface: config, backends, router, inline engine,
keys, documents. What the process shares among sessions (the model pool) is in process.py.

server/ parses and validates LSP messages and calls one method here per request; nothing in
this module knows LSP framing, and nothing here knows HTTP or MLX beyond the backend interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import taint, trust
from ..backends import Backend, make_backends, retired
from ..config import Config, decode, load_file, merge
from ..errors import ConfigError
from ..models import LoadCancelled
from ..router import Router
from ..secrets import KeyStore
from ..types import DeltaFn, ModelInfo, Outcome, Request, Status
from ..wording import PROTOCOL, Wording, for_client
from .documents import Documents
from .inline_hooks import make_inline_engine
from .process import Process
from .status import StatusBoard

log = logging.getLogger(__name__)
Document = tuple[str, str, str]  # (uri, languageId, text)


@dataclass
class Hooks:
    """How the services reach the client, without knowing LSP."""

    status: Callable[[Status], None] = lambda s: None
    load_progress: Callable[[str, float, str], None] = lambda kind, f, m: None  # begin|report|end
    call_soon: Callable[[Callable[[], None]], None] = lambda f: f()  # onto the event loop
    show_error: Callable[[str], None] = lambda message: None  # a message the user must see


@dataclass
class ConfigSources:
    """Where the config comes from; re-read on every reload."""

    path: str | None = None
    init_options: dict[str, Any] = field(default_factory=dict)
    # The editor's environment (`api_key_env`, HF_*) and working directory (relative model
    # paths); None: this process's. A session of the shared daemon gets its forwarder's.
    env: dict[str, str] | None = None
    cwd: str | None = None


class App:
    """One session. `process` is what it shares with the other sessions of the daemon (a
    shared daemon passes its own; in-process serving gets a process of its own)."""

    def __init__(
        self, sources: ConfigSources, hooks: Hooks, process: Process | None = None
    ) -> None:
        self.sources = sources
        self.hooks = hooks
        self.config = Config()
        self.keys = KeyStore()
        if sources.env is not None:
            self.keys.env = sources.env
        self.wording: Wording = PROTOCOL  # the client's words, learnt from `initialize`
        self.keys.on_checked = lambda: hooks.call_soon(self.publish_status)
        self.closed_reason: str | None = None  # why the cloud is forced off (trust.fail_closed)
        self.board = StatusBoard(self)
        self.documents = Documents()
        self.owns_process = process is None
        self.process = process or Process()
        self.conversations = taint.Conversations(memory=self.process.taint)
        self.pool = self.process.pool
        self.process.attach(self)
        self.backends: dict[str, Backend] = {}
        self.router = Router(
            self.config, self.backends, on_status=self.publish_status, secrets=self.keys
        )
        self.inline = make_inline_engine(self)
        self.apply(self.config)

    @property
    def local(self) -> Any:  # a LocalBackend (ensure_loaded)
        return self.backends["local"]

    def set_client(self, name: str | None) -> None:
        """The editor that connected (LSP clientInfo.name): the words messages use for its
        settings and for how it hands over a key."""
        self.wording = for_client(name)
        self.keys.from_editor = self.wording.set_key

    # --- config -----------------------------------------------------------------------------
    def load_config(self, overlay: dict[str, Any] | None = None) -> list[str]:
        """Apply the file + `overlay` (default: the initializationOptions).

        The file is checked on its own first: a bad file is reported (returned) and skipped, so
        the editor's valid options still apply over the defaults. The overlay's workspace layer
        may only tighten (trust.py); what it may not change is dropped and reported. Raises
        ConfigError, keeping the last good config, when the trusted combination is invalid.
        """
        problems: list[str] = []
        raw: dict[str, Any] = {}
        file_error = None
        if self.sources.path:
            try:
                raw = load_file(self.sources.path)
            except ConfigError as exc:  # its message names the file
                file_error = str(exc)
            else:
                try:
                    decode(raw)
                except ConfigError as exc:
                    file_error = f"{self.sources.path}: {exc}"
                    raw = {}
            if file_error:
                problems.append(f"invalid config file, ignored: {file_error}")
        extra = self.sources.init_options if overlay is None else overlay
        user, layer = trust.split(extra)
        merged = merge(raw, user)
        cfg, notes = trust.apply_workspace(merged, decode(merged), layer)
        cfg, self.closed_reason = trust.fail_closed(cfg, file_error)
        self.apply(cfg)
        return problems + notes

    def apply(self, cfg: Config) -> None:
        old, old_cfg = self.backends, self.config
        self.config = cfg
        self.keys.prime(cfg.backends)
        self.process.configure(cfg.local)
        where = {"cwd": self.sources.cwd, "env": self.sources.env}  # the window's
        pools, warn = self.process.http, lambda m: self.hooks.show_error(f"mlxd: {m}")
        self.backends = make_backends(
            cfg, old, old_cfg, self.keys, self.pool, **where, pools=pools, warn=warn
        )
        self.router.update(cfg, self.backends)
        self.inline.cfg = cfg.inline
        if cfg != old_cfg:  # nothing made under the old settings is shown or goes on
            self.inline.reconfigured(old_cfg, cfg)
        to_close, forget = retired(old, self.backends)
        for spec in forget - self.process.specs_in_use(but=self):  # other sessions' stay
            self.pool.forget(spec)
        for b in to_close:
            _spawn(b.close())
        self.publish_status()

    # --- requests ---------------------------------------------------------------------------
    async def generate(
        self,
        req: Request,
        *,
        model: str | None = None,
        backend: str | None = None,
        document: str | None = None,
        on_delta: DeltaFn | None = None,
        on_reasoning: DeltaFn | None = None,
    ) -> Outcome:
        """A chat or completion request (the server built it from the wire params): the model or
        backend the client chose, and the document it is about (for the privacy rules)."""
        alias, backend = self.router.resolve(model, backend)
        docs = [document] if document else []
        # A conversation that carried an excluded document, or quotes one, stays local.
        docs, tainted = self.conversations.route(
            req, docs, self.documents.texts(), self.router.excluded
        )
        outcome = await self.router.run(
            req,
            model=alias,
            backend=backend,
            documents=docs,
            on_delta=on_delta,
            on_reasoning=on_reasoning,
        )
        if tainted:
            self.conversations.remember([outcome.text], tainted)
        self.conversations.answered(outcome.text)
        return outcome

    async def inline_complete(
        self,
        text: str,
        line: int,
        character: int,
        *,
        uri: str,
        language: str,
        encoding: str,
        selected: tuple[str, tuple[int, int, int, int]] | None,
        open_documents: list[tuple[str, str, str]],
        invoked: bool = False,
    ) -> list[Any]:
        """Ghost text at a cursor. Excluded documents never feed another prompt as snippets."""
        neighbors = self._neighbors(uri, open_documents)
        return await self.inline.complete(
            text,
            line,
            character,
            uri=uri,
            language=language,
            encoding=encoding,  # type: ignore[arg-type]
            selected_text=selected[0] if selected else None,
            selected_range=selected[1] if selected else None,
            neighbors=neighbors,
            invoked=invoked,
        )

    def _neighbors(self, uri: str, documents: list[Document]) -> list[Document]:
        """The open documents but `uri`, and the copied chunks (inline/ring.py), that are not
        excluded (routing.exclude, read now: a reload may exclude a copy's source since)."""
        copies = self.inline.ring.documents(lambda source: not self.router.excluded(source))
        return copies + [d for d in documents if d[0] != uri and not self.router.excluded(d[0])]

    def inline_opened(self, uri: str, language: str, text: str, documents: list[Document]) -> None:
        """didOpen (`documents`: every open one): the inline engine indexes and warms it."""
        self.inline.opened(uri, language, text, self._neighbors(uri, documents))

    def inline_changed(
        self,
        uri: str,
        language: str,
        text: str,
        edit: tuple[int, int, str] | None,
        encoding: str,
        documents: Callable[[], list[Document]],
    ) -> None:
        """didChange: stale inline background work is dropped (see InlineEngine.changed)."""
        neighbors = lambda: self._neighbors(uri, documents())  # noqa: E731 (called later)
        self.inline.changed(uri, language, text, edit, encoding, neighbors)

    def inline_copied(self, uri: str, language: str, text: str) -> None:
        """mlxd/didCopy: the inline engine keeps the copy, unless its document is excluded."""
        if not self.router.excluded(uri):
            self.inline.copied(uri, language, text)

    def inline_moved(
        self,
        uri: str,
        language: str,
        text: str,
        position: tuple[int, int],
        encoding: str,
        documents: Callable[[], list[Document]],
    ) -> None:
        """mlxd/didMoveCursor: the inline engine warms the prompt there once the cursor rests."""
        neighbors = lambda: self._neighbors(uri, documents())  # noqa: E731 (called later)
        self.inline.moved(uri, language, text, position, encoding, neighbors)

    def models(self) -> tuple[list[ModelInfo], dict[str, str]]:
        """Each backend's model, and the backend each request kind tries first."""
        models = [ModelInfo(b.spec, name, b.loaded) for name, b in self.backends.items()]
        defaults = {kind: self._first_usable(kind) for kind in ("chat", "complete", "inline")}
        return models, defaults

    def local_specs(self) -> set[str]:
        """The local model specs this session's config uses."""
        return {s for b in self.backends.values() if b.is_local for s in b.specs}

    def stats(self) -> dict[str, Any]:
        """Counters: this session's inline engine and upstream requests; the process's local
        models (generations, prompt tokens from KV cache, loads) and MLX memory."""
        inline = {_camel(k): v for k, v in self.inline.snapshot().items()}
        shared = self.process.stats()
        return {
            "inline": inline,
            "local": shared["local"],
            "modelLoads": shared["modelLoads"],
            "upstreamRequests": self.router.upstream_requests,
            "lateForInline": self.router.breakers.late_left(),
            "mlxMemory": shared["mlxMemory"],
            "blasThreads": shared["blasThreads"],
        }

    def _first_usable(self, kind: str) -> str:
        """The backend a request of `kind` would try first (cloud ones only when allowed)."""
        for name in getattr(self.config.routing, kind):
            b = self.backends.get(name)
            if b is not None and (b.is_local or self.config.routing.cloud):
                return name
        return "local"

    async def set_api_key(self, backend: str, api_key: str, persist: bool = False) -> None:
        if backend not in self.config.backends:
            raise ValueError(f"backend: unknown backend {backend!r}")
        # The OS keyring can block (a locked keychain): keep it off the event loop.
        await asyncio.to_thread(self.keys.set, backend, api_key, persist)
        self.router.reset(backend)  # a backend that failed for want of a key gets a chance
        self.publish_status()  # no longer `no_key`

    async def preload(self) -> None:
        """Load the default local model in the background when the config asks for it."""
        if not self.config.local.preload:
            return
        try:
            await self.local.ensure_loaded()
        except LoadCancelled as exc:  # the user's own choice: no error
            log.info("%s", exc)
        except Exception as exc:  # reported through status; requests retry the load
            log.error("%s", exc)

    # --- status (status.py) -----------------------------------------------------------------
    def status(self) -> Status:
        return self.board.status()

    def publish_status(self, force: bool = False) -> None:
        self.board.publish(force)

    def cancel_loads(self) -> list[str]:
        """The user cancelled the load progress: stop the model loads in flight (the specs
        stopped). In a shared daemon, one that another window's config names goes on: that
        window waits for it (the one that cancelled stops waiting; its next request uses it)."""
        return self.pool.cancel_loading(but=self.process.specs_in_use(but=self))

    async def close(self, timeout: float | None = None) -> None:
        """Close the backends, then (when the process is this session's own) wait for the MLX
        thread's current work; each step up to `timeout` seconds (None: for ever). A session of
        a shared daemon leaves the pool to the others."""
        self.inline.ahead.close()  # background inline work first: nobody waits for it
        self.process.detach(self)
        closing = asyncio.gather(*(b.close() for b in self.backends.values()))
        try:
            await asyncio.wait_for(closing, timeout)
        except TimeoutError:
            log.warning("backends still closing after %.1f s; exiting anyway", timeout)
        if self.owns_process and not self.pool.close(timeout):
            log.warning(
                "the model is still busy after %.1f s (a load or a prefill); exiting anyway",
                timeout,
            )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _spawn(coro: Any) -> None:
    """Fire and forget on the running loop (none yet at start-up: then just close it)."""
    try:
        asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        coro.close()
