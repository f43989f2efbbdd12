"""`mlxd serve | demo | chat | models | doctor | keys | status | stop | daemon`.

`serve` is for editors (LSP on stdio; nothing but protocol frames on stdout). The other commands
are for humans; `demo` and `chat` start `mlxd serve` as a child and talk to it over stdio exactly
as an editor would. `daemon` is the shared per-user daemon (started by `serve` in shared mode).

Each command's module is imported when it runs: `serve` forwarding to the shared daemon imports
nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import __version__


def _lazy(module: str, name: str) -> Any:
    def run(args: argparse.Namespace) -> Any:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{module}"), name)(args)

    return run


def cmd_serve(args: argparse.Namespace) -> Any:
    """Forward to the shared daemon (the default; importing nothing heavy), else serve here."""
    if not args.tcp:
        from .forward import IN_PROCESS_ENV, forward, shared_settings

        shared, idle_exit_s = shared_settings(args)
        shared = shared and not os.environ.get(IN_PROCESS_ENV)
        try:
            if shared and (code := forward(args, idle_exit_s)) is not None:
                return code
        except KeyboardInterrupt:  # Ctrl-C in a terminal: end quietly, as in-process does
            return 130
    return _lazy("serve", "cmd_serve")(args)


cmd_demo, cmd_chat = _lazy("human", "cmd_demo"), _lazy("human", "cmd_chat")
cmd_models, cmd_doctor = _lazy("human", "cmd_models"), _lazy("human", "cmd_doctor")
cmd_keys = _lazy("keys", "cmd_keys")
cmd_status, cmd_stop = _lazy("control", "cmd_status"), _lazy("control", "cmd_stop")
cmd_daemon = _lazy("daemon", "cmd_daemon")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        from ..client import RpcError  # not at the top: the forwarder's path stays light

        if not isinstance(exc, RpcError):
            raise
        print(f"mlxd {args.command}: {exc}", file=sys.stderr)  # the daemon's reason, one line
        return 1


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
    mode = s.add_mutually_exclusive_group()
    mode.add_argument(
        "--shared", action="store_true", help="forward to the per-user shared daemon (the default)"
    )
    mode.add_argument(
        "--no-shared", action="store_true", help="serve in this process (a model copy of its own)"
    )
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
    add("status", cmd_status, "Show the shared daemon: sessions, loaded models, memory.")
    add("stop", cmd_stop, "Stop the shared daemon (its sessions end).")
    d = add("daemon", cmd_daemon, "Run the shared daemon (`mlxd serve` starts it).")
    d.add_argument(
        "--idle-exit-s", type=float, default=300.0, help="exit this long after the last session"
    )
    return p


__all__ = ["main"]
