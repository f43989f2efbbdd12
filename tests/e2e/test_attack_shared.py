# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attacks on the shared per-user daemon (issue #19). Each test is a finding: it failed on the
code as reviewed (it was xfail strict; the comment above each says what the fix changed). Real forwarders over real stdio, one real
daemon per test in a runtime directory of its own, real loopback HTTP servers that record what
they receive."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from aiohttp import web

from mlxd import runtime
from tests.conftest import cloud_first_config
from tests.e2e.test_shared_daemon import KEY, rt, start_raw  # noqa: F401 (fixture)
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import pid_after_kill, server_pid

pytestmark = pytest.mark.slow


class Recorder:
    """A loopback HTTP server that answers 404 to everything and records each path asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __aenter__(self) -> Recorder:
        async def any_path(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.Response(status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


CHAT = {"messages": [{"role": "user", "content": "what is in the secret file?"}], "maxTokens": 2}


@pytest.mark.parametrize("last_settings", [{"mlxd": {"routing": {"cloud": "yes"}}}, None])
async def test_replay_after_a_crash_keeps_the_cloud_off_the_window_turned_off(
    rt, tmp_path, tiny_model, last_settings
):
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["cloud answer"])
        cfg = cloud_first_config(tmp_path / "m.toml", tiny_model, fake.openai_url, "K", ("chat",))
        d = await start_raw(rt, cfg, env={"K": KEY})
        try:
            await d.initialize()
            change = "workspace/didChangeConfiguration"
            off = {"settings": {"mlxd": {"routing": {"cloud": False}}}}
            d.send({"jsonrpc": "2.0", "method": change, "params": off})
            assert (await d.request("mlxd/chat", CHAT))["result"]["backend"] == "local"
            # A typo in the editor's settings (rejected: the previous config is kept), or a
            # change notification without settings (reload: the last settings are kept).
            d.send({"jsonrpc": "2.0", "method": change, "params": {"settings": last_settings}})
            assert (await d.request("mlxd/chat", CHAT))["result"]["backend"] == "local"
            assert fake.request_count == 0 and fake.bytes_received == 0
            await pid_after_kill(d, await server_pid(d))
            r = await d.request("mlxd/chat", CHAT)
            assert fake.request_count == 0 and fake.bytes_received == 0, r
            assert r["result"]["backend"] == "local"
        finally:
            await d.kill()


async def test_a_conversation_tainted_before_a_crash_stays_local_after_it(rt, tmp_path, tiny_model):
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["cloud answer"])
        cfg = cloud_first_config(
            tmp_path / "m.toml",
            tiny_model,
            fake.openai_url,
            "K",
            ("chat",),
            'exclude = ["**/.env"]\n',
        )
        d = await start_raw(rt, cfg, env={"K": KEY})
        try:
            await d.initialize()
            uri = "file:///p/.env"
            doc = {
                "uri": uri,
                "languageId": "dotenv",
                "version": 1,
                "text": "DB_PASSWORD=hunter2\n",
            }
            d.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": doc},
                }
            )
            ask = "please explain what this settings file configures"
            first = {
                "messages": [{"role": "user", "content": ask}],
                "maxTokens": 8,
                "textDocument": {"uri": uri},
            }
            r1 = (await d.request("mlxd/chat", first))["result"]
            assert r1["backend"] == "local"
            follow = {
                "messages": [
                    {"role": "user", "content": ask},
                    {"role": "assistant", "content": r1["text"]},
                    {"role": "user", "content": "and what else?"},
                ],
                "maxTokens": 2,
            }
            assert (await d.request("mlxd/chat", follow))["result"]["backend"] == "local"
            assert fake.request_count == 0
            await pid_after_kill(d, await server_pid(d))
            r = await d.request("mlxd/chat", follow)
            assert fake.request_count == 0 and fake.bytes_received == 0, (r, fake.requests)
        finally:
            await d.kill()


_MODES = pytest.mark.parametrize(
    "mode", [pytest.param("0", id="in-process"), pytest.param("1", id="shared")]
)


def _hub_asked(paths: list[str]) -> list[str]:
    # huggingface_hub's own /api/agent-harnesses probe is not a model fetch
    return [p for p in paths if "agent-harnesses" not in p]


# Finding 2 (fixed): a relative local.model path was resolved against the daemon's working
# directory (/), not the editor's: a project's `models/coder` became a Hub repo id and was fetched.
@_MODES
async def test_a_relative_model_dir_is_the_editors_not_a_hub_download(
    rt, tmp_path, tiny_model, mode
):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "coder").symlink_to(tiny_model, target_is_directory=True)
    cfg = project / "m.toml"
    cfg.write_text('[local]\nmodel = "models/coder"\npreload = false\n')
    async with Recorder() as hub:
        hf = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        hf["MLXD_SHARED"] = mode
        d = await start_raw(rt, cfg, cwd=project, env=hf)
        try:
            await d.initialize()
            r = await d.request("mlxd/chat", CHAT)
            assert _hub_asked(hub.paths) == [], (
                hub.paths
            )  # no request to the Hub for a local directory
            assert "result" in r, r
        finally:
            await d.kill()


# Finding 3 (fixed): HF_* (HF_HUB_OFFLINE, HF_ENDPOINT, HF_TOKEN, the cache) were the daemon's,
# i.e. the first window's: a window started with HF_HUB_OFFLINE=1 still made the daemon download.
@_MODES
async def test_a_window_offline_by_hf_hub_offline_makes_no_hub_request(
    rt, tmp_path, tiny_model, mode
):
    first = tmp_path / "first.toml"
    first.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n')
    second = tmp_path / "second.toml"
    second.write_text('[local]\nmodel = "someorg/some-model-4bit"\npreload = false\n')
    async with Recorder() as hub:
        started_by = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "h")}
        a = await start_raw(rt, first, env=started_by)
        b = None
        try:
            await a.initialize()
            await server_pid(a)  # the daemon is up, with A's environment
            offline = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub.url, "MLXD_SHARED": mode}
            b = await start_raw(rt, second, env=offline)
            await b.initialize()
            r = await b.request("mlxd/chat", CHAT)
            assert "error" in r  # no such model in the cache, and this window is offline
            assert _hub_asked(hub.paths) == [], hub.paths
        finally:
            for w in (a, b):
                if w is not None:
                    await w.kill()


def _hello(body: bytes) -> bytes:
    return b"MLXD1 %d\n" % len(body) + body


# Finding 4 (fixed): a hello whose `config` was not a string (or anything else that made the
# session's construction raise) left its App attached to the shared Process for ever (stats
# over-counted, its model specs stayed 'in use', its board got every load event), and errors
# other than ValueError/TimeoutError/... escaped as 'Unhandled exception in client_connected_cb'.
async def test_malformed_hellos_leave_no_session_and_no_unhandled_exception(rt, tiny_config):
    import socket

    d = await start_raw(rt, tiny_config)
    try:
        await d.initialize()
        await server_pid(d)
        bad = [
            _hello(b'{"env": {}, "config": 5}'),
            _hello(b'{"env": {}, "config": ["a"]}'),
            _hello(b'{"env": 5}'),
            _hello(b"[" * 100000 + b"]" * 100000),
            _hello(b'{"env": {"A": ' + b"[" * 100000 + b"]" * 100000 + b"}}"),
            _hello(b'{"env": {"A": 1}}'),
            _hello(b'{"env": {}, "cwd": 5}'),
            _hello(b'{"env": {}, "config": "/tmp/a\\u0000b"}'),  # a NUL: no path
        ]
        for data in bad:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(runtime.Paths.at(rt).socket))
                s.sendall(data)
                s.settimeout(10)
                assert s.recv(4096) == b""  # hung up, nothing told
        r = await d.request("mlxd/stats")
        assert r["result"]["server"]["sessions"] == 1, r["result"]["server"]
        assert "Unhandled exception" not in (rt / "daemon.log").read_text()
    finally:
        await d.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_a_reconnect_never_hands_the_window_to_another_users_socket(tmp_path, tiny_model):
    import shutil
    import subprocess
    import sys
    import tempfile

    from tests.e2e.test_shared_daemon import wait_gone

    parent = Path(tempfile.mkdtemp(prefix="mlxd-p-"))  # a parent another user can write
    os.chown(parent, 65534, 65534)
    os.chmod(parent, 0o777)
    rt = parent / "rt"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n[backends.cloud]\nprotocol = "openai"\n'
        'base_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    )
    secret_env = "sk-window-env-0123456789abcdef"
    d = await start_raw(rt, cfg, env={"MY_TOKEN": secret_env})
    impostor = None
    try:
        await d.initialize()
        params = {"backend": "cloud", "apiKey": KEY}
        assert "result" in await d.request("mlxd/setApiKey", params)
        # The forwarder refuses a runtime directory whose parent another user may write (they
        # could swap it for their own and listen in its place, then take the hello's
        # environment and the replayed keys on the next reconnect) and serves in-process: no
        # shared socket ever sees this window. Reconnects re-check the directory and every
        # connect checks the listener's uid (tests/unit/test_shared_pure.py).
        assert await server_pid(d) == d.proc.pid
        assert _daemons_of(parent) == []
    finally:
        await d.kill()
        if impostor is not None:
            impostor.kill()
            impostor.wait()
        for where in (rt, parent / "moved"):
            subprocess.run(
                [sys.executable, "-m", "mlxd", "stop"],
                env={**os.environ, "MLXD_RUNTIME_DIR": str(where)},
                capture_output=True,
                timeout=30,
            )
        left = [p for p in _daemons_of(parent) if wait_gone([p], 10)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(parent, ignore_errors=True)


def _daemons_of(parent: Path) -> list[int]:
    from tests.e2e.test_shared_daemon import daemon_pids

    return daemon_pids(parent / "rt") + daemon_pids(parent / "moved")


# Finding 6 (fixed): Process._on_event/_on_progress handed every model's load events to every
# session: window B (which never configured A's model) got A's load progress, A's model path in
# `$/progress`/`mlxd/status`, and A's load error as a window/showMessage error.
async def test_a_model_load_of_one_window_is_not_shown_in_another(rt, tmp_path, tiny_config):
    private = "/nonexistent/client-project-a/private-model"
    cfg_a = tmp_path / "a.toml"
    cfg_a.write_text(f'[local]\nmodel = "{private}"\npreload = false\n')
    a = await start_raw(rt, cfg_a)
    b = await start_raw(rt, tiny_config)
    try:
        await a.initialize()
        await b.initialize()
        assert "error" in await a.request("mlxd/chat", CHAT)  # A's model cannot load
        await b.request("mlxd/models")  # B's frames so far are in
        await asyncio.sleep(0.5)  # the status notifications are sent after the event
        await b.request("mlxd/models")
        seen = [f for f in b.frames if "method" in f and "client-project-a" in str(f)]
        assert seen == [], seen[:3]
    finally:
        for w in (a, b):
            await w.kill()


# Finding 7 (fixed): Replay kept every didChange since didOpen and dropped a document past
# 10,000 edits, expecting the editor to reopen it, which no editor does: after a daemon crash the
# document the user typed in most answered 'not open'. Edits are now folded into its text.
async def test_a_much_edited_document_is_still_served_after_a_crash(rt, tiny_config):
    d = await start_raw(rt, tiny_config)
    try:
        await d.initialize()
        uri = "file:///p/busy.py"
        doc = {"uri": uri, "languageId": "python", "version": 1, "text": ""}
        d.send(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}
        )
        for n in range(10_001):  # a day of typing: one character per edit
            at = {"line": 0, "character": n}
            change = {"range": {"start": at, "end": at}, "text": "x"}
            params = {"textDocument": {"uri": uri, "version": n + 2}, "contentChanges": [change]}
            d.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": params})
        await pid_after_kill(d, await server_pid(d))
        inline = {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": 10_001},
            "context": {"triggerKind": 1},
        }
        r = await d.request("textDocument/inlineCompletion", inline)
        assert "result" in r, r
    finally:
        await d.kill()


# Finding 8 (fixed): the forwarder took any hang-up without `exit` for the daemon's death: when
# the daemon ended the session itself (the client's processId gone, transport._watch_parent), it
# reconnected and replayed every second for ever. The daemon now says why it ends a session
# (runtime.SESSION_ENDED) and the forwarder exits with its code; it also watches its own parent.
@_MODES
async def test_a_session_the_daemon_ended_is_not_taken_for_a_crash(rt, tiny_config, mode):
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # an editor that died without closing the server's stdin
    d = await start_raw(rt, tiny_config, env={"MLXD_SHARED": mode})
    try:
        init = {"processId": gone.pid, "capabilities": {}, "rootUri": None}
        assert "result" in await d.request("initialize", init)
        d.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        await asyncio.wait_for(d.proc.wait(), 15)  # in-process: exits within ~1 s
    finally:
        if d.proc.returncode is None:
            await d.kill()
        assert d.proc.stderr is not None
        err = (await d.proc.stderr.read()).decode()
    assert "died" not in err, err.count("died")


async def test_a_model_load_is_shown_in_every_window_that_uses_that_model(rt, tmp_path, tiny_model):
    # The other half of the finding-6 rule (issue #19 item 9): a load one window starts shows
    # in each window whose config names that model.
    cfg = tmp_path / "same.toml"
    cfg.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n')
    a = await start_raw(rt, cfg)
    b = await start_raw(rt, cfg)
    try:
        await a.initialize()
        await b.initialize()
        assert "result" in await a.request("mlxd/chat", CHAT)  # A's request loads the model
        await asyncio.sleep(0.5)  # the status notifications are sent after the event
        await b.request("mlxd/models")
        states = [f["params"]["state"] for f in b.frames if f.get("method") == "mlxd/status"]
        assert "loading" in states, states
    finally:
        for w in (a, b):
            await w.kill()
