"""What the daemon takes from its host at start, made safe to use from any working directory
(the editor may start mlxd in a repository's): PATH's absolute entries, and mlxd's directory in
the user's cache.

The same rule for mlxd's own Python children: each starts as `python -P -m mlxd...`. Without
-P, `-m` puts the working directory first on sys.path, and a repository holding an `mlxd/`
folder would run as the daemon."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def absolute_path() -> str:
    """PATH without its empty or relative entries: those name the working directory, and a
    program a repository ships there (`true`, `cc`, `as`) must never run."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in entries if p and Path(p).is_absolute())


def which(program: str) -> str | None:
    """`program`'s absolute path on the absolute entries of PATH, or None."""
    return shutil.which(program, path=absolute_path())


def cache_dir() -> Path:
    """mlxd's directory in the user's cache: $XDG_CACHE_HOME/mlxd when that is absolute (the
    XDG spec ignores a relative one), else ~/.cache/mlxd."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache") / "mlxd"
