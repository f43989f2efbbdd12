"""Raw framing over real stdio: malformed input gets the JSON-RPC error the spec names, the
daemon keeps serving, stdout carries nothing but frames, and the process ends as LSP says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kit import daemon_env, frame, serve_cmd

pytestmark = pytest.mark.timeout(120)


class Raw:
    """The daemon as a subprocess, with our own framing on both pipes (nothing hides bytes)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.frames: list[dict[str, Any]] = []
        self.stray: list[bytes] = []  # anything on stdout that is not a well-formed frame
        self._reader = asyncio.ensure_future(self._read())
        self._next = 1000

    @classmethod
    async def start(cls, config: Path | None, *, parent: list[str] | None = None) -> Raw:
        proc = await asyncio.create_subprocess_exec(
            *(parent or []),
            *serve_cmd(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=daemon_env(),
            limit=1 << 24,
        )
        return cls(proc)

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def send(self, msg: Any) -> None:
        self.send_bytes(frame(msg))

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        self._next += 1
        msg_id = self._next
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return await self.response(msg_id)

    async def response(self, msg_id: Any, timeout: float = 30) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for f in self.frames:
                    if "method" not in f and f.get("id") == msg_id:
                        return f
                if self._reader.done():  # stdout closed: no answer can come any more
                    raise AssertionError(f"no answer to {msg_id}: {await self.ended()}")
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(find(), timeout)

    async def ended(self) -> str:
        """How the process ended, with what it wrote to stderr (for a failure's message)."""
        code = await asyncio.wait_for(self.proc.wait(), 5)
        assert self.proc.stderr is not None
        err = await asyncio.wait_for(self.proc.stderr.read(), 5)
        return f"exit {code}, stderr: {err.decode(errors='replace')[-4000:]}"

    async def initialize(self) -> None:
        r = await self.request(
            "initialize", {"processId": None, "capabilities": {}, "rootUri": None}
        )
        assert "result" in r
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    async def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            try:
                header = await out.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.stray.append(exc.partial)
                return
            lines = header.decode("ascii", "replace").split("\r\n")
            lengths = [
                int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:")
            ]
            if not lengths:
                self.stray.append(header)
                continue
            self.frames.append(json.loads(await out.readexactly(lengths[0])))

    async def kill(self) -> None:
        """Kill the process (if it still runs: one that exited keeps its own failure)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()

    async def wait(self, timeout: float = 10) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def errors(self, msg_id: Any = None) -> list[dict[str, Any]]:
        return [f["error"] for f in self.frames if "error" in f and f.get("id") == msg_id]


async def test_malformed_json_gets_parse_error_and_daemon_serves_on(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    d.send(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    await asyncio.sleep(0.3)
    assert d.errors(None)[0]["code"] == -32700
    r = await d.request("mlxd/models", {})
    assert r["result"]["models"][0]["backend"] == "local"
    await d.kill()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ([1, 2, 3], -32600),  # a batch / not an object
        ({"jsonrpc": "1.0", "id": 7, "method": "mlxd/models"}, -32600),
        ({"jsonrpc": "2.0", "id": 7, "method": 42}, -32600),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "mlxd/models"}, -32600),
        ({"jsonrpc": "2.0", "id": 7, "method": "no/such"}, -32601),
        ({"jsonrpc": "2.0", "id": 7, "method": "mlxd/chat", "params": {"messages": "hi"}}, -32602),
    ],
)
async def test_invalid_requests_get_the_right_error(
    tiny_config: Path, message: Any, code: int
) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    d.send(message)
    expected_id = (
        message.get("id")
        if isinstance(message, dict) and isinstance(message.get("id"), int)
        else None
    )
    r = await d.response(expected_id)
    assert r["error"]["code"] == code
    ok = await d.request("mlxd/models", {})
    assert "result" in ok
    await d.kill()


async def test_bad_lsp_params_get_minus_32602_naming_the_field(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    r = await d.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": "file:///x.py"},
            "position": {"line": "one", "character": 0},
            "context": {"triggerKind": 1},
        },
    )
    assert r["error"]["code"] == -32602
    assert "position.line" in r["error"]["message"]
    await d.kill()


async def test_two_hundred_garbage_messages_and_the_daemon_still_answers(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    import random

    rng = random.Random(7)
    for i in range(200):
        kind = i % 5
        if kind == 0:
            d.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        elif kind == 1:
            d.send(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "mlxd/chat",
                    "params": {"messages": [{"role": i}]},
                }
            )
        elif kind == 2:
            d.send_bytes(b"Garbage-Header: yes\r\n\r\n")
        elif kind == 3:
            d.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 99999 + i}})
        else:
            d.send({"jsonrpc": "2.0", "id": i, "method": f"x/{i}", "params": None})
    r = await d.request(
        "mlxd/chat", {"messages": [{"role": "user", "content": "alive?"}], "maxTokens": 3}
    )
    assert r["result"]["backend"] == "local"
    # every request with an id got exactly one response
    ids = [f["id"] for f in d.frames if "method" not in f and f.get("id") is not None]
    assert len(ids) == len(set(ids))
    assert d.stray == []
    await d.kill()


async def test_huge_content_length_is_skipped_not_allocated(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    claim = 2 * 1024**3  # 2 GB announced; only 1 MB of it ever sent
    d.send_bytes(b"Content-Length: %d\r\n\r\n" % claim + b"x" * (1 << 20))
    await asyncio.sleep(1.0)
    rss_kb = int(Path(f"/proc/{d.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb < 1_500_000  # nowhere near 2 GB
    assert d.proc.returncode is None
    await d.kill()


async def test_requests_after_shutdown_are_refused_and_exit_code_is_zero(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    r = await d.request("shutdown")
    assert r["result"] is None
    r = await d.request("mlxd/models", {})
    assert r["error"]["code"] == -32600
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
    assert d.stray == []


async def test_exit_without_shutdown_exits_with_code_one(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 1


async def test_stdin_eof_ends_the_daemon_promptly(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    await asyncio.sleep(0.5)  # let the model load start
    assert d.proc.stdin is not None
    d.proc.stdin.close()
    assert await d.wait(10) == 0


async def test_parent_death_ends_the_daemon(tiny_config: Path, tmp_path: Path) -> None:
    """A shell parent starts mlxd with a pipe it keeps open, then is killed: no orphan."""
    pidfile = tmp_path / "pid"
    script = (
        f"{sys.executable} -m mlxd serve --config {tiny_config} <&0 >/dev/null 2>/dev/null & "
        f"echo $! > {pidfile}; wait"
    )
    parent = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdin=asyncio.subprocess.PIPE, env=daemon_env()
    )
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.05)
    child = int(pidfile.read_text())
    await asyncio.sleep(1.0)
    parent.send_signal(signal.SIGKILL)
    await parent.wait()
    for _ in range(100):  # the watchdog polls every second
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if (
            Path(f"/proc/{child}/stat").exists()
            and Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
        ):
            break
        await asyncio.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("mlxd outlived its parent by 10 s")


async def test_nothing_but_frames_on_stdout_at_debug_level(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    r = await d.request(
        "mlxd/chat",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "maxTokens": 8,
            "partialResultToken": "t",
        },
    )
    assert "result" in r
    d.send({"jsonrpc": "2.0", "id": 5, "method": "shutdown"})
    await d.response(5)
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
    await asyncio.sleep(0.1)
    assert d.stray == []
    # The log records went to the client as window/logMessage (not to stdout).
    logs = [f["params"] for f in d.frames if f.get("method") == "window/logMessage"]
    assert any(p["type"] == 3 and "shutdown requested" in p["message"] for p in logs), logs


async def test_sigterm_cancels_in_flight_work_and_exits_cleanly(
    tmp_path: Path, slow_tiny_model: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{slow_tiny_model}"\n')
    d = await Raw.start(cfg)
    await d.initialize()
    d.send(
        {
            "jsonrpc": "2.0",
            "id": 77,
            "method": "mlxd/chat",
            "params": {
                "messages": [{"role": "user", "content": "go"}],
                "maxTokens": 5000,
                "partialResultToken": "p",
            },
        }
    )
    while not any(
        f.get("method") == "$/progress" and f["params"]["token"] == "p" for f in d.frames
    ):
        await asyncio.sleep(0.02)
    d.proc.send_signal(signal.SIGTERM)
    assert await d.wait(10) == 0
    assert d.stray == []
