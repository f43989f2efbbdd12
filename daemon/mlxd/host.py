"""What the daemon takes from its host at start, made safe to use from any working directory
(the editor may start mlxd in a repository's): PATH's absolute entries, and mlxd's directory in
the user's cache.

The same rule for mlxd's own Python children: each starts as `python -P -m mlxd...`. Without
-P, `-m` puts the working directory first on sys.path, and a repository holding an `mlxd/`
folder would run as the daemon."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path


def absolute_path() -> str:
    """PATH without its empty or relative entries: those name the working directory, and a
    program a repository ships there (`true`, `cc`, `as`) must never run. With none left (PATH
    unset, or only relative entries) the system's default path, as a shell would use it."""
    entries = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).is_absolute()]
    if not entries:
        entries = [p for p in _default_path().split(os.pathsep) if Path(p).is_absolute()]
    return os.pathsep.join(entries)


def _default_path() -> str:
    try:
        return os.confstr("CS_PATH") or os.defpath
    except (ValueError, OSError, AttributeError):
        return os.defpath


def which(program: str) -> str | None:
    """`program`'s absolute path on the absolute entries of PATH, or None."""
    return shutil.which(program, path=absolute_path())


def cache_dir() -> Path | None:
    """mlxd's directory in the user's cache: $XDG_CACHE_HOME/mlxd when that is absolute (the
    XDG spec ignores a relative one), else <home>/.cache/mlxd. The home is $HOME when absolute,
    else the user's passwd entry's; None when neither gives an absolute one (a container's
    uid with no passwd entry and no HOME): then mlxd caches nothing."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if Path(xdg).is_absolute():
        return Path(xdg) / "mlxd"
    home = os.environ.get("HOME", "")
    if not Path(home).is_absolute():
        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except (KeyError, OSError):
            return None
    return Path(home) / ".cache" / "mlxd" if Path(home).is_absolute() else None


def private_dir(cache: Path, name: str) -> Path | None:
    """`cache`/`name` (cache: cache_dir()), both made 0700 and ours, when only we (and root)
    can change what it holds (safe_from_others); None otherwise."""
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # ~/.cache, if missing
        for d in (cache, cache / name):
            try:
                d.mkdir(mode=0o700)  # not parents=True: those get the umask's mode
            except FileExistsError:
                if d.stat().st_uid == os.getuid():
                    d.chmod(0o700)  # made by an older mlxd under a loose umask
    except OSError:
        return None
    out = (cache / name).resolve()
    return out if safe_from_others(out) else None


def fits_ld_path(path: Path | str) -> bool:
    """Whether `path` can be an entry of LD_PRELOAD / LD_LIBRARY_PATH (which split on
    spaces, tabs, colons and semicolons)."""
    return not any(c in str(path) for c in " \t:;")


def safe_from_others(path: Path) -> bool:
    """Whether nobody but us (and root) can replace `path`: it and every directory above it
    are ours or root's, and none of them is writable by group or others unless sticky (as
    /tmp is). Whoever may rename entries in a parent may swap in their own file."""
    try:
        path = path.resolve()
        for p in (path, *path.parents):
            st = os.stat(p)
            if st.st_uid not in (0, os.getuid()):
                return False
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                return False
    except OSError:
        return False
    return True
