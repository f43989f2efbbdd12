"""The dispatcher and the read loop in-process (split from tests/e2e/test_fuzz.py, which drives
a real daemon): what the wire cannot show."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.kit import frame


async def test_notifications_leave_no_pending_future_behind() -> None:
    """pygls files a future for each notification run by a generator handler (didOpen,
    didChange, didClose) and never drops it: one leaked future per keystroke. The dispatcher
    drops them; after a thousand edits nothing is pending."""
    import io

    from mlxd.app import ConfigSources
    from mlxd.server import MlxdServer, register
    from mlxd.transport import Dispatcher
    from mlxd.transport.framing import _Writer

    ls = MlxdServer(ConfigSources(path=None))
    register(ls)
    out = io.BytesIO()
    ls.protocol.set_writer(_Writer(out, lambda: None))
    d = Dispatcher(ls.protocol)

    def send(msg: dict[str, Any]) -> None:
        d.handle(json.dumps({"jsonrpc": "2.0", **msg}).encode())

    send({"id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}})
    uri = "file:///leak.py"
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": ""}
    send({"method": "textDocument/didOpen", "params": {"textDocument": doc}})
    for v in range(2, 1002):
        change = {"textDocument": {"uri": uri, "version": v}, "contentChanges": [{"text": "x" * v}]}
        send({"method": "textDocument/didChange", "params": change})
    send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
    await asyncio.sleep(0.05)
    assert ls.protocol.pending == {}
    assert b'"id": 1' in out.getvalue()  # initialize was answered through the same path


async def test_a_failing_dispatch_does_not_end_the_read_loop() -> None:
    """A bug in handling one message is logged; the next frame is still read and handled."""
    from mlxd.transport import read_frames

    seen: list[bytes] = []

    class Flaky:
        def handle(self, body: bytes) -> None:
            seen.append(body)
            if len(seen) == 1:
                raise RuntimeError("a bug")

    reader = asyncio.StreamReader()
    reader.feed_data(frame({"n": 1}) + frame({"n": 2}))
    reader.feed_eof()
    await asyncio.wait_for(read_frames(reader, Flaky()), 5)  # type: ignore[arg-type]
    assert [json.loads(b)["n"] for b in seen] == [1, 2]
