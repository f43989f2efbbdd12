"""Attacks on mlxd/didMoveCursor in the shared daemon (the default): two windows of one daemon,
one rests its cursor, the other types. Real forwarders, one real daemon, the tiny model."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig

from mlxd.inline.ahead import CURSOR_SETTLE_S
from tests.conftest import Session, daemon
from tests.e2e.test_cursor_warm import LONG, MIDDLE, idle, moved
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_shared_daemon import rt, shared  # noqa: F401 (rt: the fixture)
from tests.e2e.test_work_ahead import URI, config, stats, until
from tests.kit import daemon_env, serve_cmd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OTHER = LONG.replace("return x +", "return x -")  # the same file, edited, in the other window


async def test_a_rest_in_one_window_is_never_shown_in_the_other_and_does_not_starve_it(
    rt,  # noqa: F811
    tmp_path,
    tiny_model,
) -> None:
    cfg = config(tmp_path, tiny_model)
    async with daemon(cfg, env=shared(rt)) as a, daemon(cfg, env=shared(rt)) as b:
        assert a.init_result is not None
        methods = a.init_result.capabilities.experimental["mlxd"]["methods"]
        assert "mlxd/didMoveCursor" in methods  # through the forwarder
        await a.wait_status("ready")
        await b.wait_status("ready")
        open_doc(a, LONG)
        open_doc(b, LONG)  # the same document, same text, in both windows
        moved(a, MIDDLE)
        await until(a, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        sb = await stats(b)
        assert (sb["inline"]["cursorMoves"], sb["inline"]["cursorItems"]) == (0, 0)
        # B asks where A's cursor rests: B's own suggestion (its session's cache is its own).
        await inline(b, MIDDLE, 0, kind=2)
        sb = await stats(b)
        assert (sb["inline"]["cacheHits"], sb["inline"]["generations"]) == (0, 1)
        # A's item is A's: a hit there.
        assert (await inline(a, MIDDLE, 0, kind=2)).items
        sa = await stats(a)
        assert (sa["inline"]["cacheHits"], sa["inline"]["aheadHits"]) == (1, 1)

        # A's cursor keeps coming to rest (a new job each time) while B types elsewhere:
        # every one of B's requests is answered by a generation of its own, in time (none cut
        # by its bound, none failed). Whether the random model's answer is empty is not the
        # point: B's positions are line starts, where the model may choose a blank line.
        stop = asyncio.Event()
        before = (await stats(a))["inline"]["warmups"]

        async def wander() -> None:
            line = 50
            while not stop.is_set():
                moved(a, line)
                line = (line + 97) % 1100
                await asyncio.sleep(CURSOR_SETTLE_S + 0.15)  # it rests: a job starts

        wanderer = asyncio.ensure_future(wander())
        try:
            open_doc(b, OTHER, uri=URI + ".b.py")
            for i in range(8):
                # inline() checks the answer is an item list (empty or not)
                await asyncio.wait_for(inline(b, 100 + 80 * i, 0, kind=2, uri=URI + ".b.py"), 30)
                await asyncio.sleep(0.4)  # B's typing rhythm: A's rests start jobs meanwhile
        finally:
            stop.set()
            await wanderer
        sa = await until(a, idle)
        sb = await stats(b)
    # A's jobs ran beside B's requests (the model is the process's), and none of A's items
    # was ever B's: B's hits are its own (none here: every position new).
    assert sa["inline"]["cursorMoves"] >= 4 and sa["inline"]["warmups"] > before, sa["inline"]
    assert (sb["inline"]["cursorMoves"], sb["inline"]["aheadHits"]) == (0, 0)
    b_inline = {k: sb["inline"][k] for k in ("generations", "outOfTime", "late", "errors")}
    assert b_inline == {"generations": 1 + 8, "outOfTime": 0, "late": 0, "errors": 0}, sb["inline"]


async def test_after_shutdown_a_rest_noticed_before_it_runs_nothing(
    rt,  # noqa: F811
    tmp_path,
    tiny_model,
) -> None:
    # Window A's cursor came to rest just before its shutdown; B (same daemon, same model)
    # sees the process's model counters: nothing of A's may run after A's shutdown.
    cfg = config(tmp_path, tiny_model)
    async with daemon(cfg, env=shared(rt)) as b:
        await b.wait_status("ready")
        a = await ClientServerConfig(
            server_command=serve_cmd(cfg), server_env=daemon_env(shared(rt))
        ).start()
        try:
            await a.initialize_session(T.InitializeParams(capabilities=T.ClientCapabilities()))
            session = Session(a)
            open_doc(session, LONG)
            before = await stats(b)
            moved(session, MIDDLE)
            await a.shutdown_async(None)
            await asyncio.sleep(1.5)  # past the rest
            after = await stats(b)
            a.exit(None)
        finally:
            await a.stop()
    gen = lambda st: sum(e["generations"] for e in st["local"].values())  # noqa: E731
    assert gen(after) == gen(before), (before["local"], after["local"])
