"""The commands for people: `mlxd demo | chat | models | doctor`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from typing import Any

from .. import __version__

log = logging.getLogger("mlxd")


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
        await _wait_idle(client)
    finally:
        await client.shutdown()
    return 0


async def _wait_idle(client: Any, timeout: float = 30.0) -> None:
    """Wait until no local model decodes any more (`mlxd/stats` `local.*.active`): an inline
    answer can return while its generation winds down, and shutting down then made the daemon
    warn that the model is still busy. A demo waits for its own work instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = await client.request("mlxd/stats", {})
        busy = any(m.get("active") for m in (stats.get("local") or {}).values())
        if not busy and not (stats.get("inline") or {}).get("aheadActive"):
            return
        await asyncio.sleep(0.05)


def complete_statements(body: str) -> str:
    """`body` cut back to its last complete statement: trailing lines that open a block with
    nothing under it (`else:`, `for i in x:`) and trailing blank lines go. For showing a capped
    completion; the inline post-processing itself decides what an editor gets."""
    lines = body.split("\n")
    while lines and (not lines[-1].strip() or lines[-1].rstrip().endswith(":")):
        lines.pop()
    return "\n".join(lines)


async def _demo_inline(client: Any) -> None:
    """Ghost text for a function body, asked as an editor asks (the inline path, with its
    post-processing: indentation, the block's end, no repeated header)."""
    print("\n--- inline completion (textDocument/inlineCompletion) ---")
    header = "def fibonacci(n):"
    uri = "file:///demo/fibonacci.py"
    # A demo can wait for a whole body (a busy machine is slow); inline.max_ms (1.5 s) is for typing.
    # No work ahead: the demo exits after this one completion, and the next suggestion it would
    # generate in the background was still decoding at the exit ("the model is still busy").
    inline = {"max_ms": 60000, "multi_line": "always", "max_tokens": 96, "background": False}
    settings = {"inline": inline}
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
    # max_tokens can cut the body right after `else:`; show it up to its last whole statement.
    body = complete_statements(items[0]["insertText"]) if items else ""
    print(header + (body or "  # (no suggestion)"))


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
    from ..client import Client

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


def cmd_doctor(args: argparse.Namespace) -> int:
    """Each check prints one line; the exit code is the number of failed checks."""
    from ..blas import maybe_reexec_with_openblas

    maybe_reexec_with_openblas()  # report the BLAS that `serve` would use
    from ..config import Config, ConfigError, decode, load_file
    from ..models import describe, load_model, resolve_spec
    from ..secrets import KeyStore, key_sources

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
    from ..blas import blas_in_use

    blas = blas_in_use()
    line("slow" not in blas, "blas", blas)
    path = args.config or os.environ.get("MLXD_CONFIG")
    cfg = Config()
    try:
        cfg = decode(load_file(path)) if path else Config()
        line(True, "config", path or "defaults (no --config / MLXD_CONFIG)")
    except ConfigError as exc:
        line(False, "config", str(exc))
    spec = resolve_spec(cfg.local.model, None)  # as `serve` here reads it (a local path?)
    line(None, "model", describe(spec))
    try:
        t0 = time.perf_counter()
        lm = load_model(
            spec, dequantize=cfg.local.dequantize, progress=_show_download, fast_prefill=True
        )
        line(True, "model", f"loads in {time.perf_counter() - t0:.1f}s ({lm.nbytes / 1e6:.0f} MB)")
        fast = ", ".join(lm.prefill_math)
        line(None, "prefill", f"{fast} of prompt chunks on mlxd's exp" if fast else "MLX's ops")
        shadows = len(lm.shadows) if lm.shadows else 0
        how = f"{shadows} weight matrices read in their quantized form" if shadows else ""
        line(None, "decode", how or "products on the weights as loaded")
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
