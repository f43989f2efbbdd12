# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attack round 7 on the shared daemon (issue #19): an editor that sends odd but well-formed
JSON, replay after kill -9, and lifetime. Real forwarders over real stdio, a real daemon in a
runtime directory of this test's own, loopback fake providers that record what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from tests.e2e.conftest import cloud_only
from tests.e2e.test_router import ENV
from tests.e2e.test_router import KEY as KEY_
from tests.e2e.test_shared_daemon import rt, start_raw  # noqa: F401 (rt: the fixture)
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import pid_after_kill, server_pid

pytestmark = pytest.mark.slow


def _open(uri: str, text: str) -> dict:
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": text}
    return {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1E999"])
@pytest.mark.parametrize("field", [b"line", b"character"])
async def test_a_position_of_1e400_in_an_edit_does_not_kill_the_forwarder(
    rt, tiny_config, number, field
):
    """Steps: a window opens a document, then sends a didChange whose range has a number too
    big for a float (`1e400` is valid JSON; Python reads it as inf) in a position. The daemon
    refuses that notification (it is not a uinteger); the forwarder must neither crash nor
    stop serving. Before: the forwarder's replay bookkeeping did int(inf), OverflowError,
    traceback, exit 1: the editor lost its server (in-process serving refuses the message and
    serves on)."""
    d = await start_raw(rt, tiny_config)
    try:
        await d.initialize()
        d.send(_open("file:///p/a.py", "abc\n"))
        pos = b'{"line": 0, "character": 0}'
        bad = pos.replace(b'"' + field + b'": 0', b'"' + field + b'": ' + number)
        body = (
            b'{"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {'
            b'"textDocument": {"uri": "file:///p/a.py", "version": 2}, "contentChanges": '
            b'[{"range": {"start": ' + bad + b', "end": ' + pos + b'}, "text": "x"}]}}'
        )
        d.send_bytes(_frame(body))
        r = await d.request("mlxd/stats")
        assert "result" in r, r
        assert d.proc.returncode is None
        assert d.stray == []
    finally:
        await d.kill()


def _change(uri: str, version, *changes) -> dict:
    params = {"textDocument": {"uri": uri, "version": version}, "contentChanges": list(changes)}
    return {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": params}


def _edit(sl: int, sc: int, el: int, ec: int, text) -> dict:
    rng = {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}
    return {"range": rng, "text": text}


def _inline(uri: str, line: int, character: int) -> dict:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }


async def test_after_kill_9_the_new_daemon_has_exactly_the_text_the_old_one_had(
    rt, tmp_path, tiny_model
):
    """Steps: a window (every request kind on a loopback cloud, which records each prompt)
    opens a CRLF document with surrogate pairs and edits it: range edits in UTF-16 columns
    around the pairs and across CRLFs, and didChanges the daemon refuses as a whole because
    one of their changes is malformed (a negative line, a position of 1e400, a null
    version: the daemon's converter drops the notification, all its edits with it). Then an
    inline request: the cloud gets prompt P1. kill -9 of the daemon; the same inline request
    to the new daemon must send the same prompt. Before: the forwarder applied the good
    edits of a refused didChange (and a null version's), so the replayed document held text
    the window's daemon never had."""
    uri = "file:///p/crlf.py"
    async with FakeProvider(require_key=KEY_) as fake:
        fake.default = Reply.text(["x"])
        cfg = cloud_only(tmp_path, tiny_model, fake, "openai")
        d = await start_raw(rt, cfg, env=ENV)
        try:
            await d.initialize()
            d.send(_open(uri, "a😀b\r\nc😀😀d\r\n\r\nend = 1\r\n"))
            d.send(_change(uri, 2, _edit(0, 3, 0, 3, "Z")))  # after the pair: "a😀Zb"
            d.send(_change(uri, 3, _edit(1, 3, 1, 5, "")))  # the second pair of line 1 out
            d.send(_change(uri, 4, _edit(0, 5, 1, 0, " + ")))  # across a CRLF: lines joined
            d.send(_change(uri, 5, _edit(0, 0, 0, 0, "q\r\n")))
            # Refused as a whole by the daemon: a good edit beside a malformed one.
            d.send(_change(uri, 6, _edit(0, 0, 0, 0, "LEAK1"), _edit(-1, 0, 0, 0, "")))
            d.send(_change(uri, None, _edit(0, 0, 0, 0, "LEAK2")))
            body = (
                b'{"jsonrpc": "2.0", "method": "textDocument/didChange", "params": '
                b'{"textDocument": {"uri": "' + uri.encode() + b'", "version": 7}, '
                b'"contentChanges": [{"range": {"start": {"line": 0, "character": 0}, '
                b'"end": {"line": 0, "character": 0}}, "text": "LEAK3"}, {"range": {"start": '
                b'{"line": 1e400, "character": 0}, "end": {"line": 0, "character": 0}}, '
                b'"text": ""}]}}'
            )
            d.send_bytes(_frame(body))
            d.send(_change(uri, 8, _edit(3, 3, 3, 3, "_x")))  # "end_x = 1"
            r1 = await d.request("textDocument/inlineCompletion", _inline(uri, 3, 9))
            assert "result" in r1, r1
            before = [req.body for req in fake.requests]
            assert len(before) == 1 and "LEAK" not in str(before), before
            await pid_after_kill(d, await server_pid(d))
            r2 = await d.request("textDocument/inlineCompletion", _inline(uri, 3, 9))
            assert "result" in r2, r2
            after = [req.body for req in fake.requests][1:]
            assert after == before
        finally:
            await d.kill()


async def test_a_request_refused_for_its_id_is_not_answered_again_after_kill_9(rt, tiny_config):
    """Steps: a window sends requests with ids JSON-RPC does not allow (1e400, 1.0, 2.5, an
    object, a list, true); the daemon answers each once, -32600 with id null, as in-process
    serving does. Then kill -9 of the daemon. Nothing more may come for those ids. Before:
    the forwarder kept each as a request in flight and failed it again with -32803 (a second
    answer), and the one of id 1e400 under `"id": Infinity`, which is not JSON: an editor's
    strict parser fails on the whole stream."""
    d = await start_raw(rt, tiny_config)
    try:
        await d.initialize()
        ids = [b"1e400", b"1.0", b"2.5", b'{"x": 1}', b"[1]", b"true"]
        for raw in ids:
            d.send_bytes(_frame(b'{"jsonrpc": "2.0", "id": ' + raw + b', "method": "mlxd/models"}'))
        await d.request("mlxd/models")  # the refusals are in
        refused = [f for f in d.frames if f.get("error", {}).get("code") == -32600]
        assert len(refused) == len(ids) and all(f["id"] is None for f in refused), refused
        seen = len(d.frames)
        await pid_after_kill(d, await server_pid(d))
        await d.request("mlxd/models")
        # (The harness's own ids are ints: one may fail -32803 at the kill, as it should.)
        again = [f for f in d.frames[seen:] if "id" in f and type(f["id"]) not in (int, str)]
        assert again == [], again
    finally:
        await d.kill()


async def test_mlxd_stop_ends_a_daemon_that_does_not_answer(rt, tiny_config):
    """Steps: a window is served by the shared daemon; the daemon is SIGSTOPped (Ctrl-Z of a
    daemon run by hand, a debugger; its loop blocked for good is the same to a client). The
    window asks mlxd/stats (no answer can come). `mlxd status` must say that the daemon does
    not answer and give its pid (not "no shared mlxd daemon running"), and `mlxd stop` must
    end it: the daemon gone, the window's request failed -32803 as at any stop, and the
    window's forwarder ended, not restarting a daemon. Before: both printed "not answering"
    then "no shared mlxd daemon running", exit 1, and the daemon stayed, holding its model,
    with no pid given to kill it by hand."""
    from tests.e2e.test_shared_daemon import mlxd, wait_gone

    d = await start_raw(rt, tiny_config)
    pid = None
    try:
        await d.initialize()
        pid = await server_pid(d)
        os.kill(pid, signal.SIGSTOP)
        d.send({"jsonrpc": "2.0", "id": "held", "method": "mlxd/stats", "params": {}})
        status = await asyncio.to_thread(mlxd, rt, "status")
        assert status.returncode == 1
        assert f"pid {pid}" in status.stdout and "no shared" not in status.stdout, status.stdout
        stop = await asyncio.to_thread(mlxd, rt, "stop")
        assert stop.returncode == 0, stop.stdout
        assert wait_gone([pid]) == []
        r = await d.response("held", timeout=10)
        assert r["error"]["code"] == -32803 and "stopped" in r["error"]["message"], r
        assert await d.wait(10) != 0  # the window's server ended (the editor may restart it)
        from tests.kit import daemon_pids

        assert daemon_pids(rt) == []  # no new daemon started behind the stop
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await d.kill()


async def test_a_new_window_is_served_while_the_daemon_is_sigstopped(rt, tiny_config):
    """Steps: window A's shared daemon is SIGSTOPped; window B opens (`mlxd serve`, shared).
    B's `initialize` must be answered within START_WAIT_S and a margin (in-process, as when
    no daemon can be had: "the editor never breaks"), with a stderr line saying why. Before:
    no answer, ever (the kernel queues B's connection for the stopped daemon and the
    forwarder took an accepted connection for a served one; after SIGCONT it was served)."""
    from mlxd.cli.forward import START_WAIT_S

    a = await start_raw(rt, tiny_config)
    b = None
    pid = None
    try:
        await a.initialize()
        pid = await server_pid(a)
        os.kill(pid, signal.SIGSTOP)
        b = await start_raw(rt, tiny_config)
        init = {"processId": None, "capabilities": {}, "rootUri": None}
        b.send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": init})
        assert "result" in await b.response("init", timeout=START_WAIT_S + 15)
        r = await b.request("mlxd/stats")
        assert r["result"]["server"]["pid"] == b.proc.pid  # its own server, in-process
        os.kill(pid, signal.SIGCONT)  # A's daemon serves A again
        assert "result" in await a.request("mlxd/stats")
        b.proc.stdin.close()
        await b.wait(10)
        err = (await b.proc.stderr.read()).decode()
        assert f"pid {pid}" in err and "does not answer" in err, err
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for w in (a, b):
            if w is not None:
                await w.kill()


async def test_a_chat_answer_over_64_mb_once_encoded_is_still_answered(rt, tmp_path, tiny_model):
    """Steps: a hostile (or odd) OpenAI-compatible server streams a chat answer as raw UTF-8
    (its JSON not ASCII-escaped): 26 events of 500,000 "é" each (26 MB, under the daemon's
    64 MiB stream cap and 1 MiB event cap). The daemon's answer escapes each "é" to
    \\u00e9 (6 bytes): a 78 MB frame. The editor must get its answer (once), as in-process
    serving gives it. Before: the forwarder dropped every daemon frame over MAX_BODY, the
    limit meant for what an editor sends: the request was never answered."""
    import json as _json

    from aiohttp import web

    piece = "é" * 500_000

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(26):
            event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await resp.write(b"data: " + _json.dumps(event, ensure_ascii=False).encode() + b"\n\n")
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await resp.write(b"data: " + _json.dumps(done).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    chain = ["cloud"]
    from tests.e2e.test_router import make_config

    cfg = make_config(
        tmp_path / "big.toml",
        tiny_model,
        {"cloud": ("openai", url)},
        {"chat": chain, "complete": chain, "inline": chain},
        preload=False,
    )
    d = await start_raw(rt, cfg, env=ENV)
    try:
        await d.initialize()
        chat_params = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 100000}
        r = await asyncio.wait_for(d.request("mlxd/chat", chat_params), 120)
        assert "result" in r, str(r)[:300]
        assert r["result"]["text"] == piece * 26
    finally:
        await d.kill()
        await runner.cleanup()


async def test_a_model_load_in_progress_at_kill_9_is_ended_for_the_editor(rt, tmp_path, tiny_model):
    """Steps: a window (with window.workDoneProgress) starts loading a Hub model from a slow
    loopback Hub: the daemon creates work-done token T and begins it. kill -9 of the daemon
    mid-download (an OOM kill during a load is the likeliest crash). The editor must get T's
    `end` before anything else reuses T: the new daemon loads again and its first token has
    the same name (mlxd/load/1). Before: T was never ended, the editor showed the dead
    load's progress for ever, and the new daemon's `window/workDoneProgress/create` of T met
    a token still open (VS Code's client refuses a token it has)."""
    from tests.e2e.test_download import REPO_ID, hf_env
    from tests.fakes.hf_hub import FakeHub

    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'[local]\nmodel = "{REPO_ID}"\npreload = true\n')
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.3) as hub:
        d = await start_raw(rt, cfg, env=hf_env(tmp_path, hub.url))
        answered: set = set()

        async def accept_tokens() -> None:  # the editor's side of work-done progress
            while True:
                for f in list(d.frames):
                    if (
                        f.get("method") == "window/workDoneProgress/create"
                        and f["id"] not in answered
                    ):
                        answered.add(f["id"])
                        d.send({"jsonrpc": "2.0", "id": f["id"], "result": None})
                await asyncio.sleep(0.02)

        acceptor = asyncio.ensure_future(accept_tokens())
        try:
            caps = {"window": {"workDoneProgress": True}}
            r = await d.request("initialize", {"processId": None, "capabilities": caps})
            assert "result" in r
            d.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

            def progress(kind: str) -> list:
                return [
                    (i, f["params"]["token"])
                    for i, f in enumerate(d.frames)
                    if f.get("method") == "$/progress" and f["params"]["value"].get("kind") == kind
                ]

            for _ in range(600):
                if progress("begin"):
                    break
                await asyncio.sleep(0.05)
            assert progress("begin"), d.frames[-5:]
            token = progress("begin")[0][1]
            pid = await server_pid(d)
            os.kill(pid, signal.SIGKILL)
            for _ in range(600):  # the new daemon creates a token again (the load again)
                creates = [
                    i
                    for i, f in enumerate(d.frames)
                    if f.get("method") == "window/workDoneProgress/create"
                    and f["params"]["token"] == token
                ]
                if len(creates) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert len(creates) >= 2, "no new load"
            ends = [i for i, t in progress("end") if t == token]
            assert ends and ends[0] < creates[1], (ends, creates)
        finally:
            acceptor.cancel()
            await d.kill()
