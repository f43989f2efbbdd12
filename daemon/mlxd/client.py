"""A small LSP client that starts `mlxd serve` as a child and talks to it exactly as an editor
does (Content-Length framing over the child's stdio). Used by `mlxd demo`, `mlxd chat`,
`mlxd models` and the benchmarks."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], None]


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.data = error.get("data")


class Client:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._progress: dict[Any, Handler] = {}
        self.on_notification: Callable[[str, Any], None] = lambda method, params: None
        self._reader = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def spawn(
        cls, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Client:
        cmd = [sys.executable, "-P", "-m", "mlxd", "serve", *(args or [])]  # -P: host.py
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            limit=1 << 24,
        )
        return cls(proc)

    async def initialize(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": None,
                "capabilities": {"window": {"workDoneProgress": True}},
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return result

    async def request(self, method: str, params: Any, on_progress: Handler | None = None) -> Any:
        msg_id = next(self._ids)
        if on_progress is not None:
            params = {**params, "partialResultToken": f"p{msg_id}"}
            self._progress[f"p{msg_id}"] = on_progress
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self._send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        try:
            return await fut
        except asyncio.CancelledError:
            self.notify("$/cancelRequest", {"id": msg_id})
            raise
        finally:
            self._progress.pop(f"p{msg_id}", None)

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    async def shutdown(self) -> int:
        await self.request("shutdown", None)
        self.notify("exit", None)
        code = await self.proc.wait()
        self._reader.cancel()
        return code

    def _send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    async def _read_loop(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := await out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                break
            self._dispatch(json.loads(await out.readexactly(length)))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("mlxd exited"))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "method" not in msg:
            fut = self._pending.pop(msg["id"], None)
            if fut and not fut.done():
                if "error" in msg:
                    fut.set_exception(RpcError(msg["error"]))
                else:
                    fut.set_result(msg.get("result"))
        elif "id" in msg:  # a server -> client request (work-done progress create): accept
            self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        elif msg["method"] == "$/progress" and msg["params"]["token"] in self._progress:
            self._progress[msg["params"]["token"]](msg["params"]["value"])
        else:
            self.on_notification(msg["method"], msg.get("params"))
