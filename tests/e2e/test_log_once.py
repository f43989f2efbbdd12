"""Issue 18 item 17: each log record reaches the editor once.

The daemon used to send its records as `window/logMessage` and write them to stderr too; an
editor shows both (Neovim's lsp.log did; VS Code filtered stderr). Now a record goes one way:
`window/logMessage` while a client is connected, stderr otherwise.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.e2e.test_protocol_errors import Raw

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \w+ ([\w.]+): (.*)$")


async def test_each_record_goes_one_way(tiny_config: Path) -> None:
    d = await Raw.start(tiny_config)
    await d.initialize()
    r = await d.request(
        "mlxd/chat", {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 4}
    )
    assert "result" in r
    assert (await d.request("shutdown"))["result"] is None
    d.send({"jsonrpc": "2.0", "method": "exit"})
    assert await d.wait() == 0
    await asyncio.sleep(0.1)
    assert d.proc.stderr is not None
    stderr = (await d.proc.stderr.read()).decode("utf-8", "replace")
    logged = [f["params"]["message"] for f in d.frames if f.get("method") == "window/logMessage"]
    # The model load was logged to the client, once ...
    loaded = [m for m in logged if re.match(r"loaded \S+ in [\d.]+s", m)]
    assert len(loaded) == 1, logged
    # ... and none of the records sent while connected reached stderr as well.
    on_stderr = {m[2] for line in stderr.splitlines() if (m := RECORD.match(line))}
    assert not on_stderr & set(logged), on_stderr & set(logged)
    assert "shutdown requested" in logged
