# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""A shared daemon that dies of a window's state (issue #19, item 5): the forwarder replays the
window's state to each new daemon, so a daemon that dies of that state dies again after each
replay. The forwarder must not start daemon after daemon for START_WAIT_S (before: ~150 starts
in 30 s, or for ever when each new daemon answered the replayed `initialize` before dying): it
pauses longer after each such death, and after starting.CRASH_LOOP_DEATHS of them serves the
window in-process, saying why on stderr. A single kill -9 is still recovered at once.

Real forwarders over real stdio, real daemons in a runtime directory of the test's own. The
crashing daemon is a copy of mlxd/ (PYTHONPATH, as test_attack_shared_default does) whose
`mlxd daemon` process exits at once on a didOpen of a document named crash-me: the in-process
server of the same copy does not, so the window is served once it is in-process.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import pytest

from mlxd.cli.connect import CRASH_LOOP_DEATHS
from tests.e2e.test_shared_daemon import daemon_pids, rt, start_raw  # noqa: F401 (fixture)
from tests.kit import frame

pytestmark = pytest.mark.slow

CRASH = (
    "    import os, sys\n"
    "    if 'crash-me' in params.text_document.uri and sys.argv[1:2] in ({who}):\n"
    "        os._exit(7)  # the test's crash: this server dies of the window's document\n"
)


def crashing_copy(tmp_path: Path, in_process_too: bool = False) -> Path:
    """A copy of mlxd/ whose daemon (and, `in_process_too`, whose in-process server) dies on a
    didOpen of `...crash-me...`."""
    alt = tmp_path / "alt"
    shutil.copytree(Path(__file__).resolve().parents[2] / "daemon" / "mlxd", alt / "mlxd")
    handlers = alt / "mlxd" / "server" / "handlers.py"
    source = handlers.read_text()
    anchor = (
        '    """pygls has stored the document: the inline engine may warm the KV cache for it."""\n'
    )
    assert anchor in source
    who = "['daemon'], ['serve']" if in_process_too else "['daemon'],"
    source = source.replace(anchor, anchor + CRASH.format(who=who))
    handlers.write_text(source)
    return alt


def _opened(uri: str) -> dict:
    item = {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}
    return {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}}


def starts(rt: Path) -> int:
    """How many daemons started serving this runtime directory (their log's first line)."""
    log = rt / "daemon.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r"daemon \d+ serving", text))


async def test_a_daemon_dying_of_the_replayed_state_costs_a_few_starts(rt, tmp_path, tiny_config):
    """Steps: a window (the crashing copy) starts the daemon, initializes, opens crash-me: the
    daemon dies, the forwarder starts another and replays the document, which kills it too,
    and so on. Within 20 s the window must be served (mlxd/stats answered by an in-process
    server: no daemon left), after at most CRASH_LOOP_DEATHS daemon starts, and its stderr must
    say why. Before: a new daemon every ~0.3-1 s for as long as the test waited, stats never
    answered."""
    alt = crashing_copy(tmp_path)
    d = await start_raw(rt, tiny_config, env={"PYTHONPATH": str(alt)})
    try:
        await d.initialize()
        first = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        assert first != d.proc.pid  # served by a shared daemon
        d.send(_opened("file:///w/crash-me.py"))
        deadline = time.monotonic() + 20
        while True:
            r = await d.request("mlxd/stats")
            if "result" in r and not daemon_pids(rt):
                break  # served, and not by a daemon: in-process
            assert time.monotonic() < deadline, (starts(rt), r)
            await asyncio.sleep(0.2)
        assert r["result"]["server"]["pid"] not in (first, d.proc.pid)
        assert starts(rt) <= CRASH_LOOP_DEATHS, starts(rt)
        n = starts(rt)
        await asyncio.sleep(2)  # the tries have stopped
        assert starts(rt) == n
    finally:
        await d.kill()
    why = await d.ended()
    assert f"the shared daemon died {CRASH_LOOP_DEATHS} times in a row" in why, why
    assert "serving this window in-process" in why and "Traceback" not in why, why


async def test_a_single_kill_of_a_crash_free_window_is_still_recovered_at_once(
    rt, tmp_path, tiny_config
):
    """The backoff leaves the common case alone: the crashing copy's daemon dies of crash-me
    once, opened by a window that closes it again before the replay; the new daemon serves the
    window within a second or two, shared (a daemon, not in-process)."""
    alt = crashing_copy(tmp_path)
    d = await start_raw(rt, tiny_config, env={"PYTHONPATH": str(alt)})
    try:
        await d.initialize()
        first = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        # One write: the forwarder reads both before it sees the daemon die of the first.
        close = {"textDocument": {"uri": "file:///w/crash-me.py"}}
        closed = {"jsonrpc": "2.0", "method": "textDocument/didClose", "params": close}
        d.send_bytes(frame(_opened("file:///w/crash-me.py")) + frame(closed))
        died = time.monotonic()  # ...and the replay has no crash-me any more
        while True:
            r = await d.request("mlxd/stats")
            if "result" in r and r["result"]["server"]["pid"] != first:
                break
            assert r["error"]["code"] == -32803, r
        assert time.monotonic() - died < 3
        assert daemon_pids(rt) == [r["result"]["server"]["pid"]]
        assert starts(rt) == 2
    finally:
        await d.kill()


async def test_a_window_no_server_survives_ends_the_forwarder_saying_why(rt, tmp_path, tiny_config):
    """Steps: as above, but the copy's in-process server dies of crash-me too. After
    CRASH_LOOP_DEATHS daemon deaths and as many in-process ones the forwarder gives up: it
    exits 1 (the editor sees its server end, as an in-process server's crash shows) with a
    stderr line, within 20 s, having started no more than CRASH_LOOP_DEATHS daemons."""
    alt = crashing_copy(tmp_path, in_process_too=True)
    d = await start_raw(rt, tiny_config, env={"PYTHONPATH": str(alt)})
    try:
        await d.initialize()
        d.send(_opened("file:///w/crash-me.py"))
        code = await asyncio.wait_for(d.proc.wait(), 20)
    finally:
        await d.kill()
    why = await d.ended()
    assert code == 1, why
    assert f"{2 * CRASH_LOOP_DEATHS} servers in a row died" in why and "giving up" in why, why
    assert "Traceback" not in why, why
    assert starts(rt) <= CRASH_LOOP_DEATHS, starts(rt)
