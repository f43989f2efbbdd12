"""The test kit shared by tests/ and bench/ (`python -m bench` runs from the repository root, so
`tests` is importable there too): a free loopback port, a TOML writer for config files, the
daemon's command line and environment, LSP framing, and `mlx_lm.server` on loopback.

No pytest here: the benchmarks run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tomli_w

RUNTIME_ENV = "MLXD_RUNTIME_DIR"  # mlxd.runtime's; the kit does not import mlxd


def free_port() -> int:
    """A loopback port free right now (bound, then released: nobody listens on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml(cfg: dict[str, Any]) -> str:
    """A config as TOML: nested dicts are tables (`{"routing": {"models": {...}}}`)."""
    return tomli_w.dumps(cfg)


def write_config(path: Path, config: str | dict[str, Any]) -> Path:
    """Write a config file (TOML text, or a dict written as TOML) and return its path."""
    path.write_text(config if isinstance(config, str) else toml(config))
    return path


# A prefix for a command that must get Ctrl-C as a terminal's foreground process does: a shell
# starts a background job (`make test &`) with SIGINT ignored, its children inherit that, and
# Python then never raises KeyboardInterrupt (the Ctrl-C tests failed in every run started so).
AS_IN_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def serve_cmd(config: Path | None = None, *, script: bool = False) -> list[str]:
    """The command line of `mlxd serve` for this venv: `python -m mlxd`, or with `script` the
    console script users run (falling back to `python -m mlxd` where it is not installed)."""
    console = Path(sys.executable).parent / "mlxd"
    base = [str(console)] if script and console.exists() else [sys.executable, "-m", "mlxd"]
    return [*base, "serve", *(["--config", str(config)] if config else [])]


_NOT_INHERITED = ("PYTEST", "MLXD_SHARED", "MLXD_RUNTIME_DIR")


def daemon_pids(runtime_dir: Path) -> list[int]:
    """The `mlxd daemon` processes serving `runtime_dir` (read from /proc: their command line
    and the MLXD_RUNTIME_DIR in their environment)."""
    found = []
    mark = f"{RUNTIME_ENV}={runtime_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daemon" in cmd and b"mlxd" in cmd and mark in env:
            found.append(int(entry.name))
    return found


def served_sessions(runtime_dir: Path) -> int:
    """How many sessions the shared daemon(s) of `runtime_dir` started (from their log)."""
    log = runtime_dir / "daemon.log"
    return log.read_text(errors="replace").count(" started (") if log.exists() else 0


async def server_pid(d: Any) -> int:
    """The pid of the process serving session `d` (a raw stdio client: `await d.request(m)`
    gives the response dict): `mlxd/stats` `server.pid`."""
    r = await d.request("mlxd/stats")
    assert "result" in r, r
    return r["result"]["server"]["pid"]


async def pid_after_kill(d: Any, first: int) -> int:
    """kill -9 the shared daemon `first`; the pid of the one the forwarder started in its
    place. A request sent before the forwarder noticed fails with -32803 (the contract: ask
    again)."""
    os.kill(first, signal.SIGKILL)
    for _ in range(5):
        r = await d.request("mlxd/stats")
        if "result" in r:
            assert r["result"]["server"]["pid"] != first
            return r["result"]["server"]["pid"]
        assert r["error"]["code"] == -32803, r
    raise AssertionError("no new daemon")


@contextlib.contextmanager
def private_runtime(prefix: str = "mlxd-rt-", *, strict: bool = False) -> Iterator[Path]:
    """A runtime directory of the caller's own (issue #19: a test or benchmark never shares a
    daemon with the user's, or with another run's). On exit, `mlxd stop` ends the daemon that
    serves it; one still running 30 s later is killed, and RuntimeError names it. `strict`:
    a daemon found running there at all raises (whoever started it should have stopped it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))  # short: a socket path has ~100 bytes
    try:
        yield path
    finally:
        found = left = daemon_pids(path)
        stop = None
        if found:
            env = {**daemon_env(), RUNTIME_ENV: str(path)}
            cmd = [sys.executable, "-m", "mlxd", "stop"]
            stop = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = daemon_pids(path)
        if stop is not None:
            # Only `mlxd stop`'s own wait is left: it sees an exited daemon's pid until the
            # orphan is reaped, which some inits (this machine's PID 1) do once a second.
            # daemon_pids skips zombies, so the daemons are gone already.
            stop.terminate()
            stop.wait(10)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
        if left or (strict and found):
            raise RuntimeError(f"shared daemon(s) {found} ran in {path} (killed: {left})")


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a daemon child: without pytest's variables, logging at DEBUG unless
    MLXD_LOG_LEVEL is set, serving in-process (MLXD_SHARED=0), plus `extra`. ValueError when
    `extra` turns the shared daemon on without a runtime directory of its own."""
    # A test uses the shared daemon only when it asks (issue #19): never the user's own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    env.setdefault("MLXD_LOG_LEVEL", "DEBUG")
    env["MLXD_SHARED"] = "0"  # in-process, unless `extra` asks for the shared daemon
    env.update(extra or {})
    if env["MLXD_SHARED"] != "0" and not env.get(RUNTIME_ENV):
        raise ValueError("a test that asks for the shared daemon names its own MLXD_RUNTIME_DIR")
    return env


def frame(msg: Any) -> bytes:
    """One LSP frame: a JSON-RPC message (or raw body bytes) behind its Content-Length header."""
    body = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class MlxLmServer:
    """`python -m mlx_lm.server` for `model_dir` on a free loopback port, healthy on entry,
    stopped on exit. Raises RuntimeError (with the server's log) when it exits or is not
    healthy within `start_s`."""

    def __init__(self, model_dir: Path, *, extra: Sequence[str] = (), start_s: float = 120):
        self.model_dir = model_dir
        self.extra = list(extra)
        self.start_s = start_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.load_s: float | None = None  # seconds from start to healthy

    async def __aenter__(self) -> MlxLmServer:
        self._log = tempfile.NamedTemporaryFile(prefix="mlx-lm-server-", suffix=".log")
        cmd = [sys.executable, "-m", "mlx_lm.server", "--model", str(self.model_dir)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd + self.extra, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            await self._wait_healthy()
        except BaseException:
            self._stop()
            raise
        self.load_s = time.perf_counter() - t0
        return self

    async def _wait_healthy(self) -> None:
        import aiohttp

        assert self.proc is not None
        async with aiohttp.ClientSession() as session:
            for _ in range(int(self.start_s * 10)):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mlx_lm.server exited:\n{self.log_text()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        self.url + "/health", timeout=aiohttp.ClientTimeout(total=1)
                    ) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"mlx_lm.server not healthy after {self.start_s:g} s:\n{self.log_text()}"
        )

    async def __aexit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """The last 4000 characters of the server's output."""
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-4000:]


# Real code that does not change with this repository (pinned with the interpreter).
STDLIB = Path(asyncio.__file__).parent


def open_files(count: int = 6, chars: int = 300_000) -> list[tuple[str, str, str]]:
    """(uri, language, text) of `count` Python files of real code (asyncio's sources, each
    from another start), as bench open-files opens them (there: the daemon's own sources)."""
    src = "".join(p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py")))
    out = []
    for i in range(count):
        start = src.find("\n", len(src) * i // count) + 1
        out.append((f"file:///open/big{i}.py", "python", (src[start:] + src[:start])[:chars]))
    return out
