"""`mlxd daemon`: the shared per-user daemon every `mlxd serve` forwarder talks to.

One process, one asyncio loop, one Unix socket in a 0700 directory (runtime.py). Each
connection is its own LSP session: its own pygls server object over the socket's streams, its
own App (config, keys, documents, status), all sharing one Process (the model pool, its MLX
thread and KV caches). Only the daemon's own user may connect (SO_PEERCRED); there is no TCP
listener. The daemon exits `shared.idle_exit_s` after its last session ends, or on `mlxd stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from .. import __version__, runtime, taint_file

log = logging.getLogger("mlxd.daemon")

# The session whose task is running: its log records go to its client only.
SESSION: contextvars.ContextVar[Any] = contextvars.ContextVar("mlxd_session", default=None)
HELLO_LIMIT = 16 << 20  # the forwarder's environment, as JSON
HELLO_TIMEOUT_S = 10.0
# The forwarder that started the daemon connects within this (its wait is START_WAIT_S): the
# first idle exit is never sooner, or idle_exit_s = 0 would exit before any session began.
FIRST_SESSION_S = 10.0
LOCK_WAIT_S = 5.0  # a daemon still exiting holds the lock this long at most
# The working directory of a window whose own was deleted (its forwarder says cwd: null): its
# relative paths (config, model, HF_HOME, CA bundle) name nothing, as they name nothing to an
# in-process server in that directory. Never the daemon's `/`; nothing can be made under it.
GONE_CWD = "/dev/null/deleted-working-directory"


class Daemon:
    def __init__(self, idle_exit_s: float, exit_grace_s: float, stopped: Any = None) -> None:
        from ..app import Process

        self.process = Process()
        self.sessions: set[Any] = set()
        self.idle_exit_s = idle_exit_s
        self.exit_grace_s = exit_grace_s
        self.started = time.time()
        self.stopped = stopped  # the marker `mlxd stop` leaves for the forwarders
        self.done: asyncio.Event | None = None
        self.stop_reason: str | None = None  # "mlxd stop" | "SIGTERM": why done was set
        self._idle: asyncio.TimerHandle | None = None
        self._windows = 0  # connections of windows (joining, serving or leaving): not idle
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, sock: socket.socket) -> None:
        self.done = asyncio.Event()
        server = await asyncio.start_unix_server(self._connection, sock=sock)
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._stop, "SIGTERM")
        self._arm_idle(max(self.idle_exit_s, FIRST_SESSION_S))
        async with server:
            await self.done.wait()
            server.close()
        for ls in list(self.sessions):  # `mlxd stop`: end every session
            if ls.stop_serving:
                ls.stop_serving()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2 * self.exit_grace_s + 1)
        self.process.pool.close(self.exit_grace_s)

    def _stop(self, how: str) -> None:
        """Stop serving (`how`: "mlxd stop" | "SIGTERM"). The marker tells each forwarder that
        this is a stop, not a crash, even when its goodbye is lost (os._exit comes before a
        slow reader has taken what its socket still holds): it names the reason."""
        assert self.done is not None
        self.stop_reason = self.stop_reason or how
        if self.stopped is not None:
            with contextlib.suppress(OSError):
                self.stopped.write_text(f"{os.getpid()} {self.stop_reason}")
        self.done.set()

    def _arm_idle(self, after_s: float | None = None) -> None:
        if self._idle is None and not self.sessions and not self._windows:
            if self.done is not None:
                after_s = self.idle_exit_s if after_s is None else after_s
                self._idle = asyncio.get_running_loop().call_later(after_s, self._idle_exit)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_exit(self) -> None:
        log.info("no session for %.0f s: exiting", self.idle_exit_s)
        assert self.done is not None
        self.done.set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        window = False
        try:
            uid = runtime.peer_uid(writer.get_extra_info("socket"))
            if not runtime.peer_allowed(uid):
                log.warning("refused a connection from uid %s (not %d)", uid, os.getuid())
                return
            hello = await asyncio.wait_for(_read_hello(reader), HELLO_TIMEOUT_S)
            if "control" in hello:
                writer.write(json.dumps(self._control(str(hello["control"]))).encode() + b"\n")
                await writer.drain()
            else:
                window = True  # a window is joining: the idle exit waits for it
                self._windows += 1
                self._disarm_idle()
                await self._session(hello, reader, writer)
        except (ValueError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.warning("dropped a connection: %s", exc or type(exc).__name__)
        except Exception:  # a bug: this connection ends, the daemon and its sessions go on
            log.exception("dropped a connection")
        finally:
            self._tasks.discard(task)
            writer.close()
            if window:
                self._windows -= 1
                self._arm_idle()

    async def _session(self, hello: dict[str, Any], reader: Any, writer: Any) -> None:
        from ..app import ConfigSources
        from ..log_redact import install_redaction, uninstall_redaction
        from ..models import expand_home
        from ..server import MlxdServer, register
        from ..transport import serve_stream

        env, cwd, path = _window(hello)
        path = path or env.get("MLXD_CONFIG") or None
        if path:  # `~` is the editor's HOME; relative to the editor's working directory
            path = os.path.join(cwd, expand_home(path, env))
        before = list(self.process.sessions)
        try:
            ls = MlxdServer(ConfigSources(path=path, env=env, cwd=cwd), self.process)
            register(ls)
        except Exception as exc:  # no half-joined session stays attached to the process
            for app in [a for a in self.process.sessions if a not in before]:
                self.process.detach(app)
            raise ValueError(f"cannot start a session: {type(exc).__name__}: {exc}") from exc
        ls.forwarded = True  # every session's client is a forwarder
        writer.write(runtime.WELCOME)  # before any frame of the session
        # Taken over from a daemon that died: this one never saw the window's conversations.
        ls.app.conversations.recovered = hello.get("recovered") is True
        ls.quiet_start = ls.app.conversations.recovered and hello.get("answered") is True
        install_redaction(ls.app.keys)
        ls.loop = asyncio.get_running_loop()
        token = SESSION.set(ls)  # this task's context, and so every handler task it starts
        self.sessions.add(ls)
        self._disarm_idle()
        log.info("session %d started (%d now)", id(ls), len(self.sessions))
        try:
            await serve_stream(ls, reader, writer)
        finally:
            # A disconnect cancels this session's work only; a session the daemon ends itself
            # fails its requests in flight with the reason (-32803), not as cancelled.
            ls.protocol.fail_pending(self._ending(ls))
            await asyncio.sleep(0)
            await ls.app.close(timeout=self.exit_grace_s)
            uninstall_redaction(ls.app.keys)
            SESSION.reset(token)  # the client is gone: the daemon's log from here on
            self.sessions.discard(ls)
            log.info("session %d ended (%d left)", id(ls), len(self.sessions))
            if not writer.is_closing():  # the forwarder may still read: tell it why
                writer.write(self._goodbye(ls))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            self._arm_idle()

    def _ending(self, ls: Any) -> str | None:
        """Why the daemon ends this session itself (None: the client ended it)."""
        if self.done is not None and self.done.is_set() and self.stop_reason is not None:
            return f"mlxd: the shared daemon was stopped ({self.stop_reason})"
        reason = getattr(ls, "end_reason", None)
        return f"mlxd: {reason}" if reason else None

    def _goodbye(self, ls: Any) -> bytes:
        """The session's last frame: the daemon ended it on purpose, and why (runtime.py)."""
        reason = getattr(ls, "end_reason", None)
        if reason is None and self.done is not None and self.done.is_set():
            reason = f"the shared daemon was stopped ({self.stop_reason or 'idle'})"
        params = {"exitCode": ls.exit_code, "reason": reason}
        body = json.dumps({"jsonrpc": "2.0", "method": runtime.SESSION_ENDED, "params": params})
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())

    def _control(self, command: str) -> dict[str, Any]:
        if command == "stop":
            asyncio.get_running_loop().call_soon(self._stop, "mlxd stop")
            return {"stopping": True, "pid": os.getpid()}
        pool = self.process.pool
        return {
            "pid": os.getpid(),
            "version": __version__,
            "install": runtime.INSTALL,  # which installation: its code and its Python
            "code": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "python": sys.executable,
            "uptime_s": round(time.time() - self.started, 1),
            "sessions": len(self.sessions),
            "models": {spec: e.nbytes for spec, e in pool.entries.items()},
            "modelLoads": pool.loads,
            "rssBytes": _rss(),
        }


async def _read_hello(reader: asyncio.StreamReader) -> dict[str, Any]:
    magic, _, size = (await reader.readline()).strip().partition(b" ")
    if magic != runtime.HELLO or not size.isdigit() or int(size) > HELLO_LIMIT:
        raise ValueError("not an mlxd forwarder")
    try:
        hello = json.loads(await reader.readexactly(int(size)))
    except RecursionError:  # nesting deeper than the parser's stack
        raise ValueError("bad hello: nested too deep") from None
    if not isinstance(hello, dict):
        raise ValueError("bad hello")
    return hello


def _window(hello: dict[str, Any]) -> tuple[dict[str, str], str, str | None]:
    """(environment, working directory, config path) of a session's hello; ValueError when
    one is not of its type (nothing of the session is built then). The working directory of
    a window that has none (deleted) is GONE_CWD."""
    env = hello.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError("bad hello: env is not a mapping of strings")
    cwd, config = hello.get("cwd"), hello.get("config")
    for name, value in (("cwd", cwd), ("config", config)):
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ValueError(f"bad hello: {name} is not a path")
    return env, cwd or GONE_CWD, config or None


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def listen(paths: runtime.Paths) -> tuple[socket.socket, Any, int] | None:
    """Take the lock and bind the socket; None when another daemon serves it. The socket file
    of a daemon that died (no lock held) is stale: it is replaced."""
    runtime.ensure_dir(paths.dir)
    lock = open(paths.lock, "a")  # noqa: SIM115 - held for the daemon's lifetime
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline or runtime.connectable(paths.socket):
                lock.close()
                return None  # another daemon holds it and serves
            time.sleep(0.05)
    if runtime.connectable(paths.socket):
        lock.close()
        return None
    for old in (paths.socket, paths.stopped):  # stale: their daemon is gone (we hold the lock)
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(paths.socket))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock, lock, os.stat(paths.socket).st_ino


def cmd_daemon(args: Any) -> int:
    from ..blas import maybe_reexec_with_openblas

    maybe_reexec_with_openblas()
    from ..transport import protect_stdout
    from .serve import EXIT_GRACE_S, _setup_logging

    protect_stdout()
    sys.setswitchinterval(0.001)
    _setup_logging(SESSION)  # each session's records at its own window's MLXD_LOG_LEVEL
    try:
        paths = runtime.paths()
    except runtime.NoRuntimeDir as exc:  # `mlxd daemon` by hand, in a deleted folder
        log.error("cannot serve: %s", exc)
        return 1
    if (why := runtime.too_long(paths.socket)) is not None:
        log.error("cannot serve: %s", why)
        return 1
    bound = listen(paths)
    if bound is None:
        log.info("another mlxd daemon serves %s", paths.socket)
        return 0
    sock, lock, inode = bound
    log.info("mlxd %s daemon %d serving %s", __version__, os.getpid(), paths.socket)
    daemon = Daemon(args.idle_exit_s, EXIT_GRACE_S, paths.stopped)
    # Conversations tainted before a stop or a crash stay local after it (taint_file.py).
    daemon.process.taint.attach(paths.dir / taint_file.FILE_NAME)

    def leave(code: int) -> None:
        with contextlib.suppress(OSError):
            if os.stat(paths.socket).st_ino == inode:  # not a successor's
                paths.socket.unlink()
        log.info("daemon %d exiting", os.getpid())
        logging.shutdown()
        lock.close()
        os._exit(code)

    async def main() -> None:
        try:
            await daemon.run(sock)
        except Exception:  # a bug: say so, exit 1
            log.exception("the daemon failed")
            leave(1)
        leave(0)  # now: asyncio.run would first wait for the default executor's threads

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # `mlxd daemon` run by hand, then Ctrl-C
        leave(130)
    except BaseException:
        log.exception("the daemon failed")
    leave(1)
    return 1
