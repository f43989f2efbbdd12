"""`mlxd serve`: LSP on stdio for an editor, with logging routed to the client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from .. import runtime, taint_file
from .forward import RECOVERED_ENV

log = logging.getLogger("mlxd")


# Seconds the daemon waits at exit, per step (backends, then the MLX thread's current work).
EXIT_GRACE_S = 0.3


def _attach_taint(ls: Any) -> None:
    """Conversations tainted in an earlier session stay local in this one (taint_file.py)."""
    try:
        ls.app.process.taint.attach(runtime.paths().dir / taint_file.FILE_NAME)
    except runtime.NoRuntimeDir as exc:  # the memory stays in this process, as for any
        log.info("no taint file (kept in memory): %s", exc)  # unusable runtime directory


def cmd_serve(args: argparse.Namespace) -> int:
    """In-process serving (cli/__init__ tried the shared daemon first when asked to)."""
    from ..blas import maybe_reexec_with_openblas

    maybe_reexec_with_openblas()  # before anything reads stdin or loads MLX
    from ..transport import protect_stdout

    out = protect_stdout()
    # Tokens cross from the MLX thread to the event loop: hand the GIL over in 1 ms, not 5 ms.
    sys.setswitchinterval(0.001)
    router = _setup_logging()
    from ..app import ConfigSources
    from ..log_redact import install_redaction
    from ..server import MlxdServer, register
    from ..transport import serve_stdio, serve_tcp

    ls = MlxdServer(ConfigSources(path=args.config or os.environ.get("MLXD_CONFIG") or None))
    register(ls)
    _take_over(ls, os.environ.pop(RECOVERED_ENV, ""))
    _attach_taint(ls)
    install_redaction(ls.app.keys)

    stopped: list[str] = []  # why the server ends the session itself (SIGTERM)

    async def run() -> None:
        ls.loop = loop = asyncio.get_running_loop()
        # SIGTERM: stop serving; in-flight requests fail with its reason below, then we exit 0.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, _terminate, ls, stopped)
        router.ls = ls  # records go to the client once it can take them (a writer is set)
        try:
            if args.tcp:
                await serve_tcp(ls, "127.0.0.1", args.tcp)
            else:
                await serve_stdio(ls, sys.stdin.buffer, out)
        finally:
            router.ls = None  # the client has gone (or sent `exit`): stderr from here on
            # In-flight work stops at its next token: -32800, or -32803 and why (SIGTERM).
            ls.protocol.fail_pending(stopped[0] if stopped else None)
            await asyncio.sleep(0)
            # The editor gives little time (vscode-languageclient: 2 s, then SIGKILL; Neovim
            # leaves an orphan): whatever the MLX thread is doing, leave within about a
            # second; os._exit ends a model load or a prefill still running.
            await ls.app.close(timeout=EXIT_GRACE_S)
            # Leave here, not after asyncio.run: it would first wait for the default
            # executor's threads, and the import of mlx-lm under way there (models/pool.py)
            # took 3-6 s on a loaded machine for an exit, EOF, SIGTERM or Ctrl-C alike.
            task = asyncio.current_task()
            failed = sys.exc_info()[1]
            if failed is not None and not isinstance(failed, asyncio.CancelledError):
                log.error("the server failed", exc_info=failed)  # a bug: say so, exit 1
                _leave(1, out)
            _leave(130 if task and task.cancelling() else ls.exit_code, out)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # Ctrl-C before the server ran
        _leave(130, out)
    _leave(ls.exit_code, out)


def _leave(code: int, out: Any) -> None:
    """Flush the log and stdout, then end the process with `code` at once. MLX's static
    destructors abort ("terminate called without an active exception") when a thread that used
    mlx-lm's generation stream has ended before them: all work is done or abandoned here, so
    they are not run."""
    logging.shutdown()
    for stream in (out, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _take_over(ls: Any, recovered: str) -> None:
    """A window taken over from a dead shared daemon (forward.py, our stdio its forwarder):
    this server never saw its conversations, so their follow-ups stay local; "answered": the
    window has seen its config problems (they go to the log, not to a pop-up, again)."""
    ls.forwarded = ls.app.conversations.recovered = recovered in ("1", "answered")
    ls.quiet_start = recovered == "answered"


def _terminate(ls: Any, stopped: list[str]) -> None:
    stopped.append("mlxd: the server was stopped (SIGTERM)")
    if ls.stop_serving:
        ls.stop_serving()


def log_level(env: Any) -> int:
    """The level MLXD_LOG_LEVEL names in `env` (DEBUG, INFO, WARNING, ...; default INFO)."""
    level = getattr(logging, str(env.get("MLXD_LOG_LEVEL") or "INFO").upper(), logging.INFO)
    return level if isinstance(level, int) else logging.INFO


def _setup_logging(sessions: Any = None) -> _LogRouter:
    """The log router. `sessions` (the shared daemon): the ContextVar naming the session whose
    task logs; each session then gets mlxd's records at its own window's MLXD_LOG_LEVEL."""
    handler = _LogRouter(log_level(os.environ), sessions)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # A shared daemon makes every record and lets each session's level choose (few DEBUG calls,
    # none per token); in-process, the one level decides here.
    logging.getLogger("mlxd").setLevel(logging.DEBUG if sessions is not None else handler.level_)
    # pygls logs every message it sends at INFO: keep it quiet whatever MLXD_LOG_LEVEL says.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    # ... and a full traceback for every JSON-RPC error a handler answers on purpose.
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_expected_errors)
    return handler


def _expected_errors(record: logging.LogRecord) -> bool:
    """Drop pygls' traceback for errors that are answers (-32602, -32803, ...), not bugs; and
    its "Unable to deserialize message" for params that do not validate, which the transport
    answers with -32602 (or logs, for a notification): it would reach the editor as an error."""
    import cattrs
    from pygls.exceptions import JsonRpcException, JsonRpcInternalError

    if record.getMessage().startswith("Unable to deserialize message") and isinstance(
        sys.exc_info()[1], cattrs.ClassValidationError
    ):
        return False
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, JsonRpcException) and not isinstance(exc, JsonRpcInternalError))


class _LogRouter(logging.StreamHandler):  # type: ignore[type-arg]
    """Each log record goes one way: as `window/logMessage` while a client is connected, else
    to stderr ("time LEVEL logger: message"). Sent both ways, every record showed twice in the
    editor's log. The client gets mlxd's own records as their message and other libraries'
    as "logger: message", each with its traceback if any."""

    TYPES = {logging.ERROR: 1, logging.WARNING: 2, logging.INFO: 3, logging.DEBUG: 5}

    def __init__(self, level: int = logging.INFO, sessions: Any = None) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.own_format = logging.Formatter("%(message)s")
        self.other_format = logging.Formatter("%(name)s: %(message)s")
        self.level_ = level  # this process's MLXD_LOG_LEVEL (the shared daemon's own log)
        self.ls: Any = None  # the server while a client is connected
        # In the shared daemon: a ContextVar naming the session whose task logs (None: none).
        self.session: Any = sessions

    def emit(self, record: logging.LogRecord) -> None:
        ls = self.session.get() if self.session is not None else self.ls
        if self.session is not None and record.levelno < self._level_of(ls):
            return  # below the level of the window this record is for (or the daemon's own)
        loop = getattr(ls, "loop", None)
        writer = getattr(getattr(ls, "protocol", None), "writer", None)
        if loop is None or loop.is_closed() or writer is None or getattr(writer, "gone", False):
            super().emit(record)
            return
        from lsprotocol import types as T

        kind = self.TYPES.get(min(max(record.levelno - record.levelno % 10, 10), 40), 1)
        own = record.name == "mlxd" or record.name.startswith("mlxd.")
        text = (self.own_format if own else self.other_format).format(record)
        params = T.LogMessageParams(type=T.MessageType(kind), message=text)
        try:
            loop.call_soon_threadsafe(ls.window_log_message, params)
        except RuntimeError:  # the loop is closing: the record still goes somewhere
            super().emit(record)

    def _level_of(self, ls: Any) -> int:
        """The MLXD_LOG_LEVEL of the session's window (read once), else the daemon's."""
        if ls is None:
            return self.level_
        level = getattr(ls, "mlxd_log_level", None)
        if level is None:
            env = getattr(getattr(getattr(ls, "app", None), "sources", None), "env", None)
            level = log_level(env) if env is not None else self.level_
            ls.mlxd_log_level = level
        return level
