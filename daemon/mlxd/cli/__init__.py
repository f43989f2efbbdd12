"""`mlxd serve | demo | chat | models | doctor | keys`.

`serve` is for editors (LSP on stdio; nothing but protocol frames on stdout). The other commands
are for humans; `demo` and `chat` start `mlxd serve` as a child and talk to it over stdio exactly
as an editor would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import sys
import time
from typing import Any

from . import __version__

log = logging.getLogger("mlxd")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlxd", description="Editor AI daemon (LSP over stdio).")
    p.add_argument("--version", action="version", version=f"mlxd {__version__}")
    sub = p.add_subparsers(dest="command")

    def add(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        sp.add_argument("--config", help="TOML config file (default: $MLXD_CONFIG)")
        return sp

    s = add("serve", cmd_serve, "Serve LSP on stdio (what an editor starts).")
    s.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT instead")
    add("demo", cmd_demo, "Start the daemon, stream a chat answer and a completion.")
    c = add("chat", cmd_chat, "Ask the daemon one question and stream the answer.")
    c.add_argument("prompt")
    c.add_argument("--backend", help="force one backend (no fallback)")
    c.add_argument("--max-tokens", type=int, default=256)
    add("models", cmd_models, "List the configured models.")
    add("doctor", cmd_doctor, "Check Python, MLX, BLAS, the model, the config and backends.")
    k = add("keys", cmd_keys, "Manage API keys in the OS keyring.")
    k.add_argument("action", choices=["set", "list", "delete"])
    k.add_argument("name", nargs="?", help="backend name (for set / delete)")
    return p


# --- serve --------------------------------------------------------------------------------------
# Seconds the daemon waits at exit, per step (backends, then the MLX thread's current work).
EXIT_GRACE_S = 0.3


def cmd_serve(args: argparse.Namespace) -> int:
    from .blas import maybe_reexec_with_openblas

    maybe_reexec_with_openblas()  # before anything reads stdin or loads MLX
    from .transport import protect_stdout

    out = protect_stdout()
    # Tokens cross from the MLX thread to the event loop: hand the GIL over in 1 ms, not 5 ms.
    sys.setswitchinterval(0.001)
    router = _setup_logging()
    from .app import ConfigSources
    from .secrets import install_redaction
    from .server import MlxdServer, register
    from .transport import serve_stdio, serve_tcp

    ls = MlxdServer(ConfigSources(path=args.config or os.environ.get("MLXD_CONFIG") or None))
    register(ls)
    install_redaction(ls.app.keys)

    async def run() -> None:
        ls.loop = loop = asyncio.get_running_loop()
        # SIGTERM: stop serving; in-flight requests are cancelled below, then we exit 0.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, lambda: ls.stop_serving and ls.stop_serving())
        router.ls = ls  # records go to the client once it can take them (a writer is set)
        try:
            if args.tcp:
                await serve_tcp(ls, "127.0.0.1", args.tcp)
            else:
                await serve_stdio(ls, sys.stdin.buffer, out)
        finally:
            router.ls = None  # the client has gone (or sent `exit`): stderr from here on
            for fut in list(ls.protocol.pending.values()):
                fut.cancel()  # in-flight generations stop at their next token
            await asyncio.sleep(0)
            # The editor gives little time (vscode-languageclient: 2 s, then SIGKILL; Neovim
            # leaves an orphan): whatever the MLX thread is doing, leave within about a
            # second; os._exit below ends a model load or a prefill still running.
            await ls.app.close(timeout=EXIT_GRACE_S)

    code = ls.exit_code
    try:
        asyncio.run(run())
        code = ls.exit_code
    except KeyboardInterrupt:
        code = 130
    # MLX's static destructors abort ("terminate called without an active exception") when a
    # thread that used mlx-lm's generation stream has ended before them. All work is done and
    # the MLX thread joined at this point: flush and leave without running them.
    logging.shutdown()
    for stream in (out, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _setup_logging() -> _LogRouter:
    level = os.environ.get("MLXD_LOG_LEVEL", "INFO").upper()
    handler = _LogRouter()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("mlxd").setLevel(getattr(logging, level, logging.INFO))
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

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.own_format = logging.Formatter("%(message)s")
        self.other_format = logging.Formatter("%(name)s: %(message)s")
        self.ls: Any = None  # the server while a client is connected

    def emit(self, record: logging.LogRecord) -> None:
        ls = self.ls
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


# --- human commands -----------------------------------------------------------------------------
def _serve_args(args: argparse.Namespace) -> list[str]:
    return ["--config", args.config] if args.config else []


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:

    print(f"mlxd {__version__} demo: starting `mlxd serve` and talking LSP to it over stdio\n")
    client = await _start(args)
    try:
        await _wait_ready(client)
        await _stream_chat(client, "In two sentences, why do editors use language servers?", 120)
        await _demo_inline(client)
    finally:
        await client.shutdown()
    return 0


async def _demo_inline(client: Any) -> None:
    """Ghost text for a function body, asked as an editor asks (the inline path, with its
    post-processing: indentation, the block's end, no repeated header)."""
    print("\n--- inline completion (textDocument/inlineCompletion) ---")
    header = "def fibonacci(n):"
    uri = "file:///demo/fibonacci.py"
    # A demo can wait for a whole body (a busy machine is slow); inline.max_ms (1.5 s) is for typing.
    settings = {"inline": {"max_ms": 60000, "multi_line": "always", "max_tokens": 96}}
    client.notify("workspace/didChangeConfiguration", {"settings": {"mlxd": settings}})
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": header + "\n"}
    client.notify("textDocument/didOpen", {"textDocument": doc})
    r = await client.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": len(header)},
            "context": {"triggerKind": 1},
        },
    )
    items = r.get("items", []) if isinstance(r, dict) else (r or [])
    print(header + (items[0]["insertText"] if items else "  # (no suggestion)"))


def cmd_chat(args: argparse.Namespace) -> int:
    async def run() -> int:
        client = await _start(args)
        try:
            await _wait_ready(client, quiet=True)
            await _stream_chat(client, args.prompt, args.max_tokens, backend=args.backend)
        finally:
            await client.shutdown()
        return 0

    return asyncio.run(run())


def cmd_models(args: argparse.Namespace) -> int:
    async def run() -> int:
        client = await _start(args)
        try:
            r = await client.request("mlxd/models", {})
        finally:
            await client.shutdown()
        for m in r["models"]:
            print(f"{m['backend']:<12} {m['name']:<40} {'loaded' if m['loaded'] else ''}")
        print("defaults: " + ", ".join(f"{k}={v}" for k, v in r["defaults"].items()))
        return 0

    return asyncio.run(run())


async def _start(args: argparse.Namespace) -> Any:
    from .client import Client

    client = await Client.spawn(_serve_args(args), env={"MLXD_LOG_LEVEL": "WARNING"})
    client.state = asyncio.Event()
    client.last_status = {}

    def on_note(method: str, params: Any) -> None:
        if method == "mlxd/status":
            client.last_status = params
            if params["state"] in ("ready", "error", "degraded"):
                client.state.set()
        elif method == "$/progress" and isinstance(params.get("value"), dict):
            v = params["value"]
            if v.get("kind") in ("begin", "report") and getattr(client, "verbose", True):
                print(f"  [loading {v.get('percentage', 0):>3}%] {v.get('message', '')}")
        elif method == "window/showMessage":
            print(f"mlxd: {params['message']}", file=sys.stderr)

    client.on_notification = on_note
    await client.initialize()
    return client


async def _wait_ready(client: Any, quiet: bool = False) -> None:
    client.verbose = not quiet
    t0 = time.perf_counter()
    await asyncio.wait_for(client.state.wait(), timeout=600)
    if not quiet:
        s = client.last_status
        print(
            f"  model {s['state']} after {time.perf_counter() - t0:.1f}s {s.get('message') or ''}\n"
        )


async def _stream_chat(
    client: Any, prompt: str, max_tokens: int, backend: str | None = None
) -> None:
    print(f"> {prompt}\n")
    params: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "maxTokens": max_tokens,
    }
    if backend:
        params["backend"] = backend
    r = await client.request(
        "mlxd/chat", params, on_progress=lambda v: print(v["delta"], end="", flush=True)
    )
    t = r["timings"]
    first = f"{t['firstTokenMs']:.0f} ms" if t["firstTokenMs"] is not None else "-"
    print(
        f"\n\n[{r['backend']} {r['model']}: {r['usage']['completionTokens']} tokens, "
        f"first token {first}, total {t['totalMs']:.0f} ms]"
    )
    for a in r["attempts"]:
        print(f"[fell back from {a['backend']}: {a['error']}]")


def cmd_keys(args: argparse.Namespace) -> int:
    from . import secrets

    if args.action == "list":
        return secrets.cmd_keys_list(_configured_backends(args))
    if not args.name:
        print("mlxd keys set|delete NAME: name the backend", file=sys.stderr)
        return 2
    if args.action == "set":
        return secrets.cmd_keys_set(args.name)
    return secrets.cmd_keys_delete(args.name)


def _configured_backends(args: argparse.Namespace) -> list[str]:
    from .config import ConfigError, decode, load_file

    path = args.config or os.environ.get("MLXD_CONFIG")
    try:
        return list(decode(load_file(path)).backends) if path else []
    except ConfigError:
        return []


def cmd_doctor(args: argparse.Namespace) -> int:
    """Each check prints one line; the exit code is the number of failed checks."""
    from .blas import maybe_reexec_with_openblas

    maybe_reexec_with_openblas()  # report the BLAS that `serve` would use
    from .config import Config, ConfigError, decode, load_file
    from .models import describe, load_model
    from .secrets import KeyStore, key_sources

    failed = 0

    def line(ok: bool | None, what: str, detail: str) -> None:
        nonlocal failed
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[ok]
        failed += ok is False
        print(f"[{mark}] {what:<10} {detail}")

    line(sys.version_info >= (3, 11), "python", f"{platform.python_version()} ({sys.executable})")
    try:
        import mlx.core as mx

        line(True, "mlx", f"{mx.__version__}, device {mx.default_device()}")
    except Exception as exc:
        line(False, "mlx", f"cannot import mlx: {exc}")
    from .blas import blas_in_use

    blas = blas_in_use()
    line("slow" not in blas, "blas", blas)
    path = args.config or os.environ.get("MLXD_CONFIG")
    cfg = Config()
    try:
        cfg = decode(load_file(path)) if path else Config()
        line(True, "config", path or "defaults (no --config / MLXD_CONFIG)")
    except ConfigError as exc:
        line(False, "config", str(exc))
    line(None, "model", describe(cfg.local.model))
    try:
        t0 = time.perf_counter()
        lm = load_model(cfg.local.model, dequantize=cfg.local.dequantize, progress=_show_download)
        line(True, "model", f"loads in {time.perf_counter() - t0:.1f}s ({lm.nbytes / 1e6:.0f} MB)")
    except Exception as exc:
        line(False, "model", str(exc))
    keys = KeyStore(cfg.backends)
    route = "on" if cfg.routing.cloud else "off (routing.cloud = false)"
    line(None, "routing", f"cloud {route}; chat={cfg.routing.chat} inline={cfg.routing.inline}")
    for name, b in cfg.backends.items():
        has = keys.get(name, b) is not None
        needs = b.protocol == "anthropic" or "api.openai.com" in b.base_url
        detail = f"{b.protocol} {b.base_url} model={b.model or '-'} key: "
        detail += "present" if has else f"none ({key_sources(name, b)})"
        line(has or not needs, f"backend {name}", keys.redact(detail))
    return failed


def _show_download(_fraction: float, message: str) -> None:
    """A Hugging Face download's bytes, on one rewritten stderr line (it may take minutes)."""
    if message.startswith("downloading "):
        end = "\n" if message.endswith("(100%)") else ""
        print(f"\r{message}", end=end, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
