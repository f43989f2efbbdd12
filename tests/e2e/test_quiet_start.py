"""`mlxd serve` with the embedded model writes nothing to stderr from start to exit (issue #18:
library warnings, transformers' among them, reached the editor's log as noise at start). While
the editor is connected every record goes as `window/logMessage`; before and after, stderr
carries only the daemon's own records, and with a healthy start there are none.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.test_protocol_errors import Raw
from tests.kit import write_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def test_a_start_chat_and_exit_leave_stderr_empty(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "embedded.toml", "")  # every default: the embedded model
    d = await Raw.start(cfg)
    await d.initialize()
    chat = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}
    d.send({"jsonrpc": "2.0", "id": "chat", "method": "mlxd/chat", "params": chat})
    r = await d.response("chat", timeout=240)  # the load, then a prefill on a busy machine
    assert "result" in r, r
    assert (await d.request("shutdown"))["result"] is None
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
    await asyncio.sleep(0.1)
    assert d.proc.stderr is not None
    stderr = (await d.proc.stderr.read()).decode("utf-8", "replace")
    assert stderr == "", stderr
