"""`mlxd serve | demo | chat | models | doctor | keys`.

`serve` is for editors (LSP on stdio; nothing but protocol frames on stdout). The other commands
are for humans; `demo` and `chat` start `mlxd serve` as a child and talk to it over stdio exactly
as an editor would.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import __version__
from ..client import RpcError
from .human import cmd_chat, cmd_demo, cmd_doctor, cmd_models
from .keys import cmd_keys
from .serve import cmd_serve


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RpcError as exc:  # the daemon refused the request: its reason in one line
        print(f"mlxd {args.command}: {exc}", file=sys.stderr)
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


__all__ = ["main"]
