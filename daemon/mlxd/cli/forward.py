"""`mlxd serve` in shared mode: a thin forwarder between the editor's stdio and the shared
per-user daemon (daemon.py), byte for byte both ways.

It imports the standard library and runtime.py only, so the editor's `initialize` is answered
as soon as the warm daemon answers it. It starts the daemon, detached, when none serves the
socket, hands its own environment, working directory and config path to its session (each
window's `api_key_env`, MLXD_CONFIG, ...), and exits within a second of the editor closing
stdin or of the daemon ending the session. None is returned when no daemon can be reached or
started: the caller then serves in-process, so the editor never breaks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

from .. import runtime
from ..frames import MAX_BODY, Splitter
from .connect import CRASH_LOOP_DEATHS, SHORT_LIVED_S, START_WAIT_S, Restarts, connect
from .editor_io import Editor, read
from .replay import DIED, Replay, frame, stopped

EOF_GRACE_S = 0.8  # after the editor's EOF, how long the daemon may take to hang up
SHARED_ENV = "MLXD_SHARED"  # "1" / "0": the mode, when neither flag is given
DEFAULT_IDLE_EXIT_S = 300.0
IN_PROCESS_ENV = "MLXD_FORWARD_FAILED"  # set once forwarding failed: serve in-process at once
# "1": an in-process server taking over a window; "answered": one whose initialize was answered
RECOVERED_ENV = "MLXD_FORWARD_RECOVERED"


def shared_settings(args: argparse.Namespace) -> tuple[bool, float]:
    """(serve through the shared daemon?, its idle exit in seconds): `--shared` /
    `--no-shared`, else $MLXD_SHARED, else the config file's [shared] (default: on)."""
    section: dict[str, Any] = {}
    path = args.config or os.environ.get("MLXD_CONFIG")
    if path:
        try:
            import tomllib

            with open(os.path.expanduser(path), "rb") as f:
                section = tomllib.load(f).get("shared") or {}
        except (OSError, ValueError):
            section = {}  # the session reports a bad file; here the defaults apply
    idle = section.get("idle_exit_s", DEFAULT_IDLE_EXIT_S)
    if not isinstance(idle, int | float) or isinstance(idle, bool) or not 0 <= idle < 1e9:
        idle = DEFAULT_IDLE_EXIT_S
    if args.shared or args.no_shared:
        return bool(args.shared), float(idle)
    env = os.environ.get(SHARED_ENV, "").strip().lower()
    if env in ("1", "true", "yes", "0", "false", "no"):
        return env in ("1", "true", "yes"), float(idle)
    return section.get("enabled") is not False, float(idle)


def forward(args: argparse.Namespace, idle_exit_s: float) -> int | None:
    """Serve the editor through the shared daemon; the exit code, or None to serve in-process."""
    try:
        paths = runtime.paths()
        runtime.ensure_dir(paths.dir)
    except (OSError, runtime.UnsafeRuntimeDir) as exc:
        return _fallback(f"runtime directory unusable: {exc}")
    if (why := runtime.too_long(paths.socket)) is not None:
        return _fallback(why)
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # a folder deleted since the editor opened it: served without, as in-process
        cwd = None
    # Made absolute here, where `~` and the working directory are the editor's.
    config = os.path.expanduser(args.config) if args.config else None
    if config and cwd:
        config = os.path.normpath(os.path.join(cwd, config))
    window = {"env": dict(os.environ), "cwd": cwd, "config": config}
    sock = connect(paths, idle_exit_s, runtime.hello(window))
    if isinstance(sock, str):
        return _fallback(sock)

    def reconnect(answered: bool, dropped_s: float, deaths: int) -> socket.socket | str:
        """A new server for the window (hello sent), after `deaths` short-lived ones in a
        row (starting.Restarts); the reason to give up when none can be had."""
        if deaths >= 2 * CRASH_LOOP_DEATHS:  # in-process servers too: nothing will serve it
            return (
                f"{deaths} servers in a row died within {SHORT_LIVED_S:.0f} s of being given "
                f"this window, in-process ones too; giving up (see {paths.log})"
            )
        if deaths >= CRASH_LOOP_DEATHS:  # no daemon survives this window: not one more
            sock: socket.socket | str = (
                f"the shared daemon died {deaths} times in a row within {SHORT_LIVED_S:.0f} s "
                f"of being given this window's state (see {paths.log})"
            )
        elif dropped_s > START_WAIT_S:  # daemon after daemon hung up without a word
            sock = f"the shared daemon keeps hanging up on this window (see {paths.log})"
        else:
            sock = _reconnect(paths, idle_exit_s, {**window, "answered": answered})
        if not isinstance(sock, str):
            return sock
        # As at start: a window that cannot have a shared daemon is served in-process.
        print(f"mlxd: {sock}; serving this window in-process", file=sys.stderr, flush=True)
        return _in_process(config, answered)

    return pump(sock, sys.stdin.fileno(), sys.stdout.fileno(), reconnect, paths)


def _reconnect(
    paths: runtime.Paths, idle_exit_s: float, hello: dict[str, Any]
) -> socket.socket | str:
    """A new daemon's connection, its hello saying "recovered" (it does not know this window's
    conversations) and "answered" (the window has had its initialize's answer, and seen its
    config problems)."""
    try:  # checked again: the directory may have been swapped while the daemon was down
        runtime.ensure_dir(paths.dir)
    except (OSError, runtime.UnsafeRuntimeDir) as exc:
        return f"runtime directory unusable: {exc}"
    return connect(paths, idle_exit_s, runtime.hello({**hello, "recovered": True}))


def _in_process(config: str | None, answered: bool) -> socket.socket | str:
    """An in-process server of this window's own (`mlxd serve --no-shared`, its stdio on a
    socket pair), for a window whose shared daemon died and cannot be replaced: the editor
    keeps a server. It too is told that it never saw the window's conversations."""
    ours, theirs = socket.socketpair()
    cmd = [sys.executable, "-P", "-m", "mlxd", "serve", "--no-shared"]  # -P: host.py
    env = {**os.environ, IN_PROCESS_ENV: "1", RECOVERED_ENV: "answered" if answered else "1"}
    try:
        subprocess.Popen(
            cmd + (["--config", config] if config else []), stdin=theirs, stdout=theirs, env=env
        )
    except OSError as exc:
        ours.close()
        return f"could not serve in-process either: {exc}"
    finally:
        theirs.close()
    return ours


def _fallback(reason: str) -> None:
    print(f"mlxd: serving in-process: {reason}", file=sys.stderr, flush=True)
    # The in-process server may re-execute itself (blas.py): it must not try all this again.
    os.environ[IN_PROCESS_ENV] = "1"
    return None


TOO_BIG = frame(
    b'{"jsonrpc": "2.0", "id": null, "error": {"code": -32600, '
    b'"message": "Invalid Request: message over %d bytes"}}' % MAX_BODY
)


class _Link:
    """The forwarder's connection to the daemon, which it replaces when the daemon dies."""

    def __init__(self, sock: socket.socket, reconnect: Any, paths: runtime.Paths | None) -> None:
        self.sock = sock
        # (answered, dropped_s, deaths) -> socket | str (why not), hello already sent
        self.reconnect = reconnect
        self.paths = paths
        self.frames = Splitter(max_body=None)  # the daemon's answers: whatever their size
        self.dead = False
        self.dropped: float | None = None  # since when daemons hang up without a word
        self.restarts = Restarts()  # the servers that died soon after being given the window

    def send(self, body: bytes) -> None:
        if not self.dead:
            try:
                self.sock.sendall(frame(body))
            except OSError:
                self.dead = True  # noticed at the next read: the socket reads EOF


def pump(
    sock: socket.socket,
    stdin: int,
    stdout: int,
    reconnect: Any = None,
    paths: runtime.Paths | None = None,
) -> int:
    """Copy LSP messages stdin -> socket and socket -> stdout until the daemon ends the
    session, or until EOF_GRACE_S after the editor has gone: stdin's EOF, or stdout closed
    (the daemon then ends the session on its side).

    When the daemon dies mid-session (`reconnect` given), the requests in flight fail with
    -32803, and a new daemon (started by `reconnect`) is brought to the window's state.
    `paths`: the daemon's (default: runtime.paths())."""
    replay, from_client, link = Replay(), Splitter(), _Link(sock, reconnect, paths)
    editor = Editor(stdout, os.getppid())
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(stdin, selectors.EVENT_READ)
    try:
        while True:
            events = sel.select(editor.wait_s())
            if editor.late():  # the grace after the editor's EOF is over, even mid-stream
                return 0
            if os.getppid() != editor.parent:  # an editor that died without closing stdin
                print(f"mlxd: parent process {editor.parent} is gone; exiting", file=sys.stderr)
                return 0
            eof = False
            for key, _ in events:
                if key.fileobj is not link.sock:
                    eof = not _from_client(read(stdin), from_client, replay, link, editor)
                    continue
                try:
                    data = link.sock.recv(1 << 16)
                except OSError:
                    data = b""
                if data:
                    link.dropped = None
                    for body in link.frames.feed(data):
                        if body is not None and replay.from_daemon(body):
                            editor.write(frame(body))
                    continue
                if replay.ended is not None:  # the daemon ended the session on purpose
                    return _ended(replay.ended, replay, editor)
                gone = editor.deadline is not None or editor.gone
                if gone or replay.exited or reconnect is None:  # no recovery wanted
                    return 0
                if (why := _recover(link, replay, editor, sel)) is not None:
                    print(f"mlxd: {why}", file=sys.stderr, flush=True)
                    return 1
            if editor.deadline is None and (eof or editor.gone):  # the editor has gone
                editor.deadline = _hang_up(sel, stdin, link)
    finally:
        link.sock.close()
        editor.close()


def _hang_up(sel: Any, stdin: int, link: _Link) -> float:
    """The editor has gone: read no more of it, and let the daemon end the session on its
    side (it reads EOF). When the forwarder stops waiting for that (time.monotonic)."""
    sel.unregister(stdin)
    with contextlib.suppress(OSError):
        link.sock.shutdown(socket.SHUT_WR)
    return time.monotonic() + EOF_GRACE_S


def _from_client(
    data: bytes | None, frames: Splitter, replay: Replay, link: _Link, editor: Editor
) -> bool:
    """Forward the editor's `data` to the daemon; False at the editor's EOF."""
    if data is None:
        return True
    for body in frames.feed(data):
        if body is None:  # as the daemon answers one, unread
            editor.write(TOO_BIG)
            continue
        replay.from_client(body)
        link.send(body)
    return bool(data)


def _ended(why: dict[str, Any], replay: Replay, editor: Editor) -> int:
    """The exit code the daemon gave when it ended the session, after logging its reason and
    failing (-32803, with that reason) the requests it left unanswered: the daemon answers
    those it had read; one still on its way when the session ended is answered here."""
    reason = why.get("reason")
    if isinstance(reason, str):
        print(f"mlxd: the shared daemon ended this session: {reason}", file=sys.stderr)
    text = f"mlxd: the shared daemon ended this session ({reason or 'no reason given'})"
    for error in [] if replay.exited else replay.failed(text, replayed=False):
        editor.write(error)
    code = why.get("exitCode")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _recover(link: _Link, replay: Replay, editor: Editor, sel: Any) -> str | None:
    """The daemon hung up without `exit`: fail what was in flight, then connect to a new
    daemon and replay the window's state. The reason when that is impossible. A daemon that
    dies again soon after each replay is started again after a pause that grows, and not
    more than starting.CRASH_LOOP_DEATHS times in a row (then the window is served
    in-process)."""
    paths = link.paths or runtime.paths()
    try:  # "<pid> <reason>": it was stopped (mlxd stop, SIGTERM) and its goodbye was lost
        reason = paths.stopped.read_text().partition(" ")[2].strip() or "mlxd stop"
    except OSError:
        reason = None
    if reason is not None:  # the requests are not retried, and no daemon is started
        for error in replay.progress_ended(
            f"mlxd: the shared daemon was stopped ({reason})"
        ) + replay.failed(stopped(reason), replayed=False):
            editor.write(error)
        return f"the shared daemon was stopped ({reason})"
    for error in replay.progress_ended("mlxd: the shared daemon stopped") + replay.failed(DIED):
        editor.write(error)
    print("mlxd: the shared daemon died; starting a new one", file=sys.stderr, flush=True)
    link.dropped = link.dropped or time.monotonic()
    deaths = link.restarts.died()
    time.sleep(link.restarts.pause_s())  # 0 for one death: a kill -9 is recovered at once
    dropped_s = time.monotonic() - link.dropped
    sock = link.reconnect(replay.initialize_answered, dropped_s, deaths)
    if isinstance(sock, str):
        return sock
    link.restarts.given()
    sel.unregister(link.sock)
    link.sock.close()
    link.sock, link.frames, link.dead = sock, Splitter(max_body=None), False
    sel.register(sock, selectors.EVENT_READ)
    for body in replay.replay():
        link.send(body)
    return None
