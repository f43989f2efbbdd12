"""Where the shared daemon lives: a per-user directory (mode 0700) holding its socket, its lock
and its log, and the checks both sides make. Standard library only: the forwarder imports this
and nothing heavy.

The directory is `$MLXD_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/mlxd`, else
`<tmp>/mlxd-<uid>` (macOS has no XDG_RUNTIME_DIR), made absolute. The socket's name carries
the mlxd version and the installation (where its code and its Python environment are, and the
forwarder-daemon wire it speaks), so an
upgraded mlxd, or another checkout or virtual environment of the same version, never talks to
a daemon running other code.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__

RUNTIME_ENV = "MLXD_RUNTIME_DIR"
# The forwarder's first line on the socket: this magic, then the length of a JSON hello
# ({"env": {...}, "cwd": ..., "config": ...} for a session, {"control": "status"|"stop"}).
HELLO = b"MLXD1"
# The daemon's first bytes to a window, once its session is set up: a forwarder that gets no
# welcome in time (a daemon SIGSTOPped, or its loop blocked, whose socket still takes
# connections) serves its window in-process instead of leaving it without answers.
WELCOME = b"MLXD1 ok\n"
# The daemon's last message on a session it ends itself (`exit`, the client's process gone,
# `mlxd stop`): {"exitCode": int, "reason": str | null}. The forwarder consumes it and exits
# with that code; a hang-up without it is the daemon's death (the forwarder recovers).
SESSION_ENDED = "$/mlxd/sessionEnded"
# The daemon's word to a forwarder after `initialize` and after each settings change: the
# settings in force ({"settings": {...}, "changes": how many didChangeConfiguration it has
# handled}). The forwarder consumes it; after a crash it replays only those settings, not
# every change the window ever sent (each would be acted on again: errors, model loads).
SETTINGS_IN_FORCE = "$/mlxd/settingsInForce"


class UnsafeRuntimeDir(Exception):
    """The runtime directory is not ours alone (owner or mode): nothing is served from it."""


class NoRuntimeDir(UnsafeRuntimeDir):
    """The runtime directory cannot even be named: a relative $MLXD_RUNTIME_DIR in a working
    directory that was deleted (the editor's project folder, removed while it ran)."""


@dataclass(frozen=True)
class Paths:
    dir: Path
    socket: Path  # the daemon's Unix socket
    lock: Path  # held (flock) by the one daemon serving the socket
    log: Path  # the daemon's stderr
    stopped: Path  # written by `mlxd stop`: forwarders end with the daemon, not restart it

    @classmethod
    def at(cls, directory: Path, version: str = __version__) -> Paths:
        return cls.named(directory, f"mlxd-{version}-{INSTALL}")

    @classmethod
    def named(cls, directory: Path, name: str) -> Paths:
        """The paths of the daemon whose socket is `<directory>/<name>.sock`."""
        return cls(
            directory,
            directory / f"{name}.sock",
            directory / f"{name}.lock",
            directory / "daemon.log",
            directory / f"{name}.stopped",
        )


@dataclass(frozen=True)
class Found:
    """A daemon's socket in the runtime directory, of any mlxd version or installation."""

    paths: Paths
    version: str
    install: str | None  # None: a version that named its socket by its version only
    ours: bool  # this mlxd's own (same version and installation)


def sockets(directory: Path) -> list[Found]:
    """Every mlxd daemon socket in `directory` (`mlxd-<version>[-<install>].sock`), this
    installation's first: an upgrade or another checkout leaves its own daemon there."""
    found = []
    for sock in sorted(directory.glob("mlxd-*.sock")):
        version, _, install = sock.stem.removeprefix("mlxd-").rpartition("-")
        if not (len(install) == 8 and all(c in "0123456789abcdef" for c in install)):
            version, install = sock.stem.removeprefix("mlxd-"), ""  # mlxd-<version>.sock
        ours = version == __version__ and install == INSTALL
        found.append(Found(Paths.named(directory, sock.stem), version, install or None, ours))
    return sorted(found, key=lambda f: not f.ours)


# The forwarder-daemon wire (hello, welcome, the $/mlxd/ notifications): part of the socket's
# name, so that code updated in place (same version, same directories: a `git pull`, a
# reinstall) never pairs a forwarder with a daemon still running the old wire. 2: WELCOME.
WIRE = 2


def _install_id() -> str:
    """8 hex digits naming this installation: its code's directory, its Python prefix and
    its WIRE."""
    import hashlib

    where = f"{os.path.realpath(os.path.dirname(__file__))}\0{os.path.realpath(sys.prefix)}"
    where += f"\0{WIRE}" if WIRE > 1 else ""  # (wire 1 named no wire)
    return hashlib.sha256(where.encode()).hexdigest()[:8]


INSTALL = _install_id()


def runtime_dir(env: dict[str, str] | None = None) -> Path:
    """The runtime directory, absolute: the daemon runs in `/`, its forwarders anywhere.
    Raises NoRuntimeDir for a relative $MLXD_RUNTIME_DIR when the working directory is gone."""
    env = dict(os.environ) if env is None else env
    if explicit := env.get(RUNTIME_ENV):
        try:
            return Path(os.path.abspath(os.path.expanduser(explicit)))
        except OSError as exc:  # os.getcwd(): the working directory was deleted
            raise NoRuntimeDir(
                f"{RUNTIME_ENV}={explicit} is relative and the working directory is gone "
                f"({exc.strerror}): set it to an absolute path"
            ) from None
    if xdg := env.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "mlxd"
    return Path(tempfile.gettempdir()) / f"mlxd-{os.getuid()}"


def paths(env: dict[str, str] | None = None) -> Paths:
    """This installation's paths in the runtime directory (NoRuntimeDir: see runtime_dir)."""
    return Paths.at(runtime_dir(env))


# The longest path a Unix socket can be bound at or connected to (sun_path, less its NUL).
SUN_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


def too_long(path: Path) -> str | None:
    """Why no daemon can serve a socket at `path` (None when it can): a runtime directory so
    deep that the socket's path does not fit in sun_path."""
    size = len(os.fsencode(path))
    if size <= SUN_PATH_MAX:
        return None
    return (
        f"the socket path {path} is {size} bytes, over the {SUN_PATH_MAX} a Unix socket's "
        f"path may have: set {RUNTIME_ENV} to a shorter directory"
    )


def check_private(path: Path, st: os.stat_result, kind: int) -> None:
    """Raise UnsafeRuntimeDir unless `st` (of `path`, not followed through a symlink) is of
    `kind` (stat.S_IFDIR, stat.S_IFREG), ours, and closed to group and others."""
    if stat.S_IFMT(st.st_mode) != kind:
        what = "a directory" if kind == stat.S_IFDIR else "a regular file"
        raise UnsafeRuntimeDir(f"{path}: not {what}")
    if st.st_uid != os.getuid():
        raise UnsafeRuntimeDir(f"{path}: owned by uid {st.st_uid}, not {os.getuid()}")
    if st.st_mode & 0o077:
        raise UnsafeRuntimeDir(f"{path}: mode {st.st_mode & 0o777:o}, must be private (700/600)")


def ensure_dir(directory: Path) -> None:
    """Create the directory 0700, or check an existing one is ours and closed to others.
    Raises UnsafeRuntimeDir otherwise (someone else could plant or read the socket)."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    check_private(directory, os.lstat(directory), stat.S_IFDIR)
    for parent in directory.absolute().parents:
        # Whoever may rename entries in a parent may swap the directory for their own (the
        # sticky bit of /tmp forbids that; ssh's StrictModes reasons the same way).
        st = os.stat(parent)
        if st.st_uid not in (0, os.getuid()):
            raise UnsafeRuntimeDir(f"{parent}: owned by uid {st.st_uid}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafeRuntimeDir(f"{parent}: writable by others (mode {st.st_mode & 0o777:o})")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if the OS cannot say)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    if sys.platform == "darwin":  # getpeereid: LOCAL_PEERCRED gives a struct xucred
        creds = sock.getsockopt(0, 0x001, struct.calcsize("IIh16I"))  # SOL_LOCAL, LOCAL_PEERCRED
        return struct.unpack("IIh16I", creds)[1]
    return None


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a Unix socket (None if the OS cannot say)."""
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid = struct.unpack("3i", creds)[0]
        elif sys.platform == "darwin":  # SOL_LOCAL, LOCAL_PEERPID
            pid = struct.unpack("i", sock.getsockopt(0, 0x002, struct.calcsize("i")))[0]
        else:
            return None
    except OSError:
        return None
    return pid if pid > 0 else None


def peer_allowed(uid: int | None, own: int | None = None) -> bool:
    """Only the daemon's own user may use it (root included: it is not us)."""
    return uid is not None and uid == (os.getuid() if own is None else own)


def hello(message: dict) -> bytes:
    """The preamble a client sends before anything else on the socket."""
    import json

    body = json.dumps(message).encode()
    return HELLO + b" %d\n" % len(body) + body


def connect(path: Path, timeout: float = 1.0) -> socket.socket | None:
    """A connection to the daemon's socket, or None when nothing serves it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        if not peer_allowed(peer_uid(sock)):  # never hand a window (env, keys) to another user
            raise OSError(f"{path}: served by another user")
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def connectable(path: Path) -> bool:
    sock = connect(path)
    if sock is None:
        return False
    sock.close()
    return True


def alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts: signalling it is refused) and has
    not exited. A process that exited but is not reaped yet (a zombie) is gone: an orphaned
    daemon waits for PID 1 to reap it, which takes ~1 s on some inits and never happens in a
    container without one, and `mlxd stop` would wait that out for a daemon already gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux: /proc/<pid>/stat's state (after the parenthesised command name) is Z. Elsewhere
    (no /proc) False: macOS's launchd reaps at once."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")
