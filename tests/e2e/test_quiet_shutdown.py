"""Issue #18, new-user finding 14: `mlxd models` printed, in 2 runs of 5, `ERROR
concurrent.futures: exception calling callback ... CancelledError` at shutdown. The daemon asks
the client to create a work-done progress token for the model load; pygls cancels that pending
request at `shutdown`, and the done-callback read the cancelled future's result. A shutdown
while the client has not answered (or a client that refuses the token) must stay quiet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_protocol_errors import Raw
from tests.kit import daemon_env

CAPS = {"window": {"workDoneProgress": True}}


def _problems(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if " ERROR " in ln or ln.startswith("Traceback")]


async def _create_request(d: Raw) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            for f in d.frames:
                if f.get("method") == "window/workDoneProgress/create":
                    return f
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(find(), 30)


@pytest.mark.parametrize("client", ["silent", "refuses"])
async def test_shutdown_with_the_load_token_unanswered_or_refused_is_quiet(
    client: str, tiny_config: Path
) -> None:
    d = await Raw.start(tiny_config)
    r = await d.request("initialize", {"processId": None, "capabilities": CAPS, "rootUri": None})
    assert "result" in r, r
    d.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    create = await _create_request(d)  # the preload's progress token
    if client == "refuses":
        d.send({"jsonrpc": "2.0", "id": create["id"], "error": {"code": -32603, "message": "no"}})
        await asyncio.sleep(0.2)
        assert (await d.request("mlxd/models", {}))["result"], "serves on after a refusal"
    r = await d.request("shutdown")
    assert r.get("result", "missing") is None, r
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
    assert d.proc.stderr is not None
    stderr = (await d.proc.stderr.read()).decode(errors="replace")
    assert _problems(stderr) == [], stderr[-3000:]
    # While a client is connected the log goes to it (window/logMessage), not to stderr.
    errors = [
        f["params"]["message"]
        for f in d.frames
        if f.get("method") == "window/logMessage" and f["params"]["type"] == 1
    ]
    assert errors == []


def test_mlxd_models_exits_quietly(tiny_config: Path) -> None:
    """The user's command, as they ran it (the race above, hit in some runs)."""
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-m", "mlxd", "models", "--config", str(tiny_config)],
            capture_output=True,
            text=True,
            timeout=120,
            env=daemon_env({"MLXD_LOG_LEVEL": "WARNING"}),
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "local" in run.stdout, run.stdout
        assert _problems(run.stderr) == [], run.stderr
