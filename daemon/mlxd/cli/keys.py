"""`mlxd keys set | list | delete`: API keys in the OS keyring (the commands are in secrets)."""

from __future__ import annotations

import argparse
import os
import sys


def cmd_keys(args: argparse.Namespace) -> int:
    from .. import secrets

    if args.action == "list":
        return secrets.cmd_keys_list(_configured_backends(args))
    if not args.name:
        print("mlxd keys set|delete NAME: name the backend", file=sys.stderr)
        return 2
    if args.action == "set":
        return secrets.cmd_keys_set(args.name)
    return secrets.cmd_keys_delete(args.name)


def _configured_backends(args: argparse.Namespace) -> list[str]:
    from ..config import ConfigError, decode, load_file

    path = args.config or os.environ.get("MLXD_CONFIG")
    try:
        return list(decode(load_file(path)).backends) if path else []
    except ConfigError:
        return []
