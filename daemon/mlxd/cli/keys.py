"""`mlxd keys set | list | delete`: API keys in the OS keyring (never printed)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterable

from .. import secrets


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "list":
        return cmd_keys_list(_configured_backends(args))
    if not args.name:
        print("mlxd keys set|delete NAME: name the backend", file=sys.stderr)
        return 2
    if args.action == "set":
        return cmd_keys_set(args.name)
    return cmd_keys_delete(args.name)


def _configured_backends(args: argparse.Namespace) -> list[str]:
    from ..config import ConfigError, decode, load_file

    path = args.config or os.environ.get("MLXD_CONFIG")
    try:
        return list(decode(load_file(path)).backends) if path else []
    except ConfigError:
        return []


def cmd_keys_set(name: str) -> int:
    """`mlxd keys set NAME`: prompt without echo, store in the OS keyring."""
    try:
        key = getpass.getpass(f"API key for {name} (input hidden): ").strip()
    except (EOFError, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 1
    if not key:
        print("no key entered; nothing stored", file=sys.stderr)
        return 1
    try:
        secrets.keyring_set(name, key)
    except Exception as exc:
        print(
            f"cannot store the key in the OS keyring ({secrets.error_kind(exc)}); "
            "use the backend's api_key_env instead",
            file=sys.stderr,
        )
        return 1
    print(f"stored the key for {name} in the OS keyring (service {secrets.SERVICE!r})")
    return 0


def cmd_keys_list(candidates: Iterable[str] = ()) -> int:
    """`mlxd keys list`: names that have a key in the OS keyring, never values. `candidates`
    (e.g. the configured backend names) are checked too, for keys stored by other tools."""
    try:
        names = sorted(set(secrets.keyring_names()) | set(candidates))
        found = [n for n in names if secrets.keyring_has(n)]
    except Exception as exc:
        print(f"cannot read the OS keyring ({secrets.error_kind(exc)})", file=sys.stderr)
        return 1
    for n in found:
        print(n)
    if not found:  # an empty stdout alone reads like a failure
        print(
            f"no keys stored in the OS keyring (service {secrets.SERVICE!r}); "
            "add one with `mlxd keys set NAME`",
            file=sys.stderr,
        )
    return 0


def cmd_keys_delete(name: str) -> int:
    """`mlxd keys delete NAME`: remove a key from the OS keyring."""
    try:
        deleted = secrets.keyring_delete(name)
    except Exception as exc:
        print(f"cannot change the OS keyring ({secrets.error_kind(exc)})", file=sys.stderr)
        return 1
    if not deleted:
        print(f"no key stored for {name}", file=sys.stderr)
        return 1
    print(f"deleted the key for {name}")
    return 0
