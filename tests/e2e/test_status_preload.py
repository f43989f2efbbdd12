"""Issue #18, new-user finding 11: with `local.preload = false` the daemon said `starting` until
a request loaded the local model, so a user whose chats a cloud backend answered saw
`mlxd: starting` forever. Nothing waits to load: the status is `ready`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.test_protocol_errors import Raw


async def _first_status(d: Raw, timeout: float = 20) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            for f in d.frames:
                if f.get("method") == "mlxd/status":
                    return f["params"]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


async def test_no_preload_is_ready_at_once_and_the_model_stays_unloaded(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = tmp_path / "mlxd.toml"
    cfg.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n')
    d = await Raw.start(cfg)
    await d.initialize()
    status = await _first_status(d)
    assert status["state"] == "ready", status
    assert status["message"] == f"{tiny_model} loads on first use", status
    models = await d.request("mlxd/models", {})
    assert [m["loaded"] for m in models["result"]["models"]] == [False], models
    await d.request("shutdown")
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
