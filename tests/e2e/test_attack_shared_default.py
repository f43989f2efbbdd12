# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attacks on the shared daemon now that it is the default of `mlxd serve` (issue #19, wave 2
session 4). Each test is one finding (all fixed by session 5; they were strict xfails while they
failed), with the exact steps in its docstring. Real forwarders over real stdio, one real daemon per test in a runtime directory of its
own (stopped, then killed if left), real loopback servers that record what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.test_attack_shared import Recorder, _hub_asked
from tests.e2e.test_shared_daemon import (  # noqa: F401
    daemon_pids,
    mlxd,
    rt,
    start_raw,
    wait_gone,
)
from tests.kit import AS_IN_A_TERMINAL, daemon_env, pid_after_kill, server_pid

pytestmark = pytest.mark.slow

INITIALIZE = {"processId": None, "capabilities": {}, "rootUri": None}
CHANGE = "workspace/didChangeConfiguration"


def _config(tmp_path: Path, model: Path, preload: bool = False) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{model}"\npreload = {str(preload).lower()}\n')
    return cfg


# Finding A (medium): the socket is named by the mlxd version only, so two installations of the
# same version share one daemon that runs the code, Python and environment of whichever window
# started it: a development checkout and the released package, a venv with mlx[cuda] and one
# without, two git worktrees (as on this machine), pipx and a venv. Window B, started from the
# venv's own mlxd, is served by window A's copy (PYTHONPATH, the first window's environment).
# Fixed: the socket's name carries the installation (runtime.INSTALL).
async def test_a_window_is_never_served_by_another_installations_daemon(rt, tmp_path, tiny_config):
    """Steps: copy daemon/mlxd to ALT with one visible change (stats' server.alt = true); start
    window A with PYTHONPATH=ALT (its forwarder, and the daemon it starts, run ALT); start
    window B from the venv as installed (no PYTHONPATH); ask B for mlxd/stats."""
    alt = tmp_path / "alt"
    shutil.copytree(Path(__file__).resolve().parents[2] / "daemon" / "mlxd", alt / "mlxd")
    handlers = alt / "mlxd" / "server" / "handlers.py"
    source = handlers.read_text()
    assert '"pid": os.getpid(),' in source
    handlers.write_text(source.replace('"pid": os.getpid(),', '"pid": os.getpid(), "alt": True,'))
    a = await start_raw(rt, tiny_config, env={"PYTHONPATH": str(alt)})
    b = None
    try:
        await a.initialize()
        assert (await a.request("mlxd/stats"))["result"]["server"].get("alt") is True
        b = await start_raw(rt, tiny_config)
        await b.initialize()
        server = (await b.request("mlxd/stats"))["result"]["server"]
        # Before: {'pid': <A's daemon>, 'alt': True, 'sessions': 2}: B runs A's code.
        assert "alt" not in server, server
    finally:
        for w in (a, b):
            if w is not None:
                await w.kill()
        # A's daemon is another installation's: only its own `mlxd stop` reaches it.
        env = {**daemon_env(), "MLXD_RUNTIME_DIR": str(rt), "PYTHONPATH": str(alt)}
        cmd = [sys.executable, "-m", "mlxd", "stop"]
        subprocess.run(cmd, env=env, capture_output=True, timeout=60)


# Finding B (medium): a daemon that dies while a window's `initialize` is in flight answers it
# -32803 "send the request again". No editor sends `initialize` again: VS Code's client reports
# "Server initialization failed" and stops, Neovim's client exits; the window has no mlxd until
# it is restarted by hand, though the forwarder did replay the initialize to the new daemon.
# Fixed: an initialize in flight is replayed under its own id (cli/replay.py).
async def test_initialize_in_flight_when_the_daemon_dies_is_answered_by_the_new_one(
    rt, tiny_config
):
    """Steps: window A starts the daemon; SIGSTOP it; start window B (its hello waits in the
    socket); B sends initialize; SIGKILL the daemon; B's initialize must get a result."""
    a = await start_raw(rt, tiny_config)
    b = None
    try:
        await a.initialize()
        pid = await server_pid(a)
        os.kill(pid, signal.SIGSTOP)
        b = await start_raw(rt, tiny_config)
        await asyncio.sleep(1.0)  # B's forwarder has connected and sent its hello
        b.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE})
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        r = await b.response(1, timeout=60)
        # The forwarder still works (this held): later requests are served by a new daemon.
        assert (await server_pid(b)) != pid
        # Before: {'error': {'code': -32803, 'message': 'mlxd: the shared daemon stopped ...'}}
        assert "result" in r and "capabilities" in r["result"], r
        assert b.errors(1) == []
    finally:
        for w in (a, b):
            if w is not None:
                await w.kill()


# Finding C (medium): after a crash the forwarder replays every settings change the window ever
# sent, and the new daemon acts on each one again: it shows the errors of settings the user fixed
# long ago (window/showMessage pop-ups) and loads (downloads, for a Hugging Face id) the models of
# settings the user has since left: a big model tried once and abandoned is fetched again.
# Fixed: the daemon tells the forwarder the settings in force after each change
# (runtime.SETTINGS_IN_FORCE); a replay gives the new daemon those alone (cli/replay.py).
async def test_a_crash_neither_re_shows_old_errors_nor_loads_abandoned_models(
    rt, tmp_path, tiny_model
):
    """Steps: window with local.model = the tiny model (preload); settings change 1:
    routing.cloud = "yes" (refused, error shown); change 2: local.model = someorg/abandoned
    (the Hub is asked, fails, error shown); change 3: settings without local.model (back to the
    file's model; `{}` would keep change 2's, as docs/protocol.md says); change 4: `{}` (a
    reload: change 3's stay in force). kill -9 the daemon; after recovery, nothing new about
    changes 1-2 reaches the editor or the Hub."""
    cfg = _config(tmp_path, tiny_model, preload=True)
    async with Recorder() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        d = await start_raw(rt, cfg, env=env)
        try:
            await d.initialize()
            for settings in (
                {"routing": {"cloud": "yes"}},
                {"local": {"model": "someorg/abandoned-model"}},
            ):
                d.send(
                    {"jsonrpc": "2.0", "method": CHANGE, "params": {"settings": {"mlxd": settings}}}
                )
                await asyncio.sleep(2.0)  # its load (and failure) happens
            for settings in ({"local": {"preload": True}}, {}):
                d.send(
                    {"jsonrpc": "2.0", "method": CHANGE, "params": {"settings": {"mlxd": settings}}}
                )
                await asyncio.sleep(1.0)
            asked = len(_hub_asked(hub.paths))
            assert asked > 0  # the abandoned model was tried, once, while it was the setting
            seen = len(d.frames)
            await pid_after_kill(d, await server_pid(d))
            await asyncio.sleep(3.0)  # the replayed settings are acted on
            await server_pid(d)
            stale = [f for f in d.frames[seen:] if _about(f, ("routing.cloud", "abandoned"))]
            # Before: "invalid ...: routing.cloud: expected `bool`" shown again, "loading
            # someorg/abandoned-model", its error shown, the Hub asked for it again.
            assert stale == [], stale
            assert len(_hub_asked(hub.paths)) == asked, hub.paths
        finally:
            await d.kill()


@pytest.mark.parametrize("where", ["initializationOptions", "the config file"])
async def test_a_crash_does_not_show_the_windows_config_problems_again(
    rt, tmp_path, tiny_model, where
):
    """Finding C's sibling: the replayed initialize's config problems (a workspace setting
    dropped, an invalid config file: shown at `initialized`) were shown again by the new daemon
    as pop-ups. Steps: a window whose initializationOptions carry a workspace `backends` (which
    the workspace layer may not set), or whose config file has an unknown key; its problem is
    shown once; kill -9 the daemon; after recovery, it is not shown again (only logged)."""
    cfg = _config(tmp_path, tiny_model)
    options: dict = {}
    if where == "the config file":
        cfg.write_text(cfg.read_text() + "[nosuchsection]\nx = 1\n")
        word = "nosuchsection"
    else:
        options = {"workspace": {"backends": {"evil": {"protocol": "openai"}}}}
        word = "backends"
    d = await start_raw(rt, cfg)
    try:
        params = {**INITIALIZE, "initializationOptions": options}
        d.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        assert "result" in await d.response(1, timeout=60)
        d.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        shown = lambda frames: [  # noqa: E731
            f for f in frames if f.get("method") == "window/showMessage" and word in json.dumps(f)
        ]
        first = await server_pid(d)
        assert len(shown(d.frames)) == 1, d.frames
        seen = len(d.frames)
        await pid_after_kill(d, first)
        await asyncio.sleep(2.0)  # the replay's initialized is handled
        await server_pid(d)
        # Before: the same pop-up again, from the new daemon.
        assert shown(d.frames[seen:]) == [], d.frames[seen:]
    finally:
        await d.kill()


def _about(f: dict, words: tuple[str, ...]) -> bool:
    """A message shown to the user (or the status line) that mentions one of `words`."""
    shown = f.get("method") in ("window/showMessage", "mlxd/status")
    return shown and any(w in json.dumps(f) for w in words)


# Finding D (low-medium): a relative MLXD_RUNTIME_DIR (`MLXD_RUNTIME_DIR=tmp/mlxd` in a shell
# profile, `.mlxd`) is read against the forwarder's working directory by the forwarder and against
# `/` by the daemon it starts (cwd="/", the same relative value inherited): the forwarder waits at
# <cwd>/tmp/mlxd for a socket that is at /tmp/mlxd, for START_WAIT_S (30 s: the editor's window
# has no answer to `initialize` for 30 s), then serves in-process, and the daemon it started is
# left running (a later window starts one more, which leaves, again and again for 30 s).
# Fixed: runtime_dir is absolute, and the forwarder hands it to the daemon so.
async def test_a_relative_runtime_dir_is_one_directory_for_forwarder_and_daemon(
    tmp_path, tiny_config
):
    """Steps: MLXD_RUNTIME_DIR=tmp/mlxd-rel-PID, `mlxd serve` started in a project directory;
    initialize; ask mlxd/stats which process serves; look for a daemon at /tmp/mlxd-rel-PID."""
    rel = Path(f"tmp/mlxd-rel-{os.getpid()}")
    # A short project directory: the socket's path must fit in sun_path (108 bytes), and
    # pytest's tmp_path under xdist is too deep for that.
    project = Path(tempfile.mkdtemp(prefix="p-"))
    absolute = project / rel
    d = await start_raw(rel, tiny_config, cwd=project)
    try:
        d.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE})
        await d.response(1, timeout=120)  # before: 31 s
        served_by = await server_pid(d)
        # Before: served in-process (the forwarder's own pid), and a daemon left serving
        # /tmp/mlxd-rel-PID, which no forwarder will ever look at.
        assert served_by != d.proc.pid and not (Path("/") / rel).exists()
    finally:
        await d.kill()
        for where in (absolute, Path("/") / rel):
            mlxd(where, "stop")
        for pid in daemon_pids(rel) + daemon_pids(absolute):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(Path("/") / rel, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)


# Finding E (low): `mlxd stop` while a window streams a chat answers it -32800 "Request with id
# ... is canceled", the code of the client's own $/cancelRequest (Neovim swallows it as the
# user's cancel), not -32803 with a reason as for a daemon that died (docs/protocol.md lists
# -32800 for $/cancelRequest and `shutdown` only).
# Fixed: a session the daemon ends itself fails its requests in flight -32803 with the reason
# (AdaptedProtocol.fail_pending); the forwarder answers any it never read the same way.
@pytest.mark.parametrize("how", ["mlxd stop", "SIGTERM", "SIGTERM in-process"])
async def test_mlxd_stop_fails_a_streaming_chat_with_a_reason(rt, tmp_path, slow_tiny_model, how):
    """Steps: window streams a 2000-token chat on the slow tiny model; `mlxd stop` (or SIGTERM
    to the shared daemon, or to an in-process server: the same end of the session, by the
    server); the chat's answer (exactly one) is -32803 and says the server was stopped, how."""
    env = {"MLXD_SHARED": "0"} if how == "SIGTERM in-process" else None
    d = await start_raw(rt, _config(tmp_path, slow_tiny_model), env=env)
    try:
        await d.initialize()
        pid = await server_pid(d)
        chat = {"messages": [{"role": "user", "content": "count"}], "maxTokens": 2000}
        d.send({"jsonrpc": "2.0", "id": "long", "method": "mlxd/chat", "params": chat})
        await asyncio.sleep(1.5)  # streaming in the daemon
        if how == "mlxd stop":
            stop = await asyncio.to_thread(mlxd, rt, "stop")
            assert stop.returncode == 0, stop
        else:
            os.kill(pid, signal.SIGTERM)
        r = await d.response("long", timeout=30)
        await d.wait(10)  # the forwarder ends with the daemon (by design)
        assert [f for f in d.frames if f.get("id") == "long"] == [r] and d.stray == []
        # Before: {'code': -32800, 'message': 'Request with id "long" is canceled'}
        assert r["error"]["code"] == -32803 and "stopped" in r["error"]["message"], r
        assert how.split()[0] in r["error"]["message"], r
    finally:
        await d.kill()


# Finding F (low-medium): after an upgrade, `mlxd status` says "no shared mlxd daemon" and
# `mlxd stop` "no shared mlxd daemon running" while the previous version's daemon still runs in
# the same runtime directory, holding its model (GBs) until its windows close and idle_exit_s
# passes: the commands look only at their own version's socket.
# Fixed: both list and stop every mlxd daemon of the runtime directory (runtime.sockets), each
# named by its version and installation.
@pytest.mark.parametrize("other", ["another version", "another installation"])
async def test_status_and_stop_see_a_daemon_of_another_version(rt, tmp_path, tiny_config, other):
    """Steps: copy daemon/mlxd to OLD with __version__ = "0.0.9" (or unchanged: another
    installation of this version); a window started with PYTHONPATH=OLD starts OLD's daemon,
    then closes (the daemon stays, idle_exit_s); a window of this installation starts its own;
    `mlxd status` and `mlxd stop` of this installation."""
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).resolve().parents[2] / "daemon" / "mlxd", old / "mlxd")
    init = old / "mlxd" / "__init__.py"
    if other == "another version":
        init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.0.9"'))
    a = await start_raw(rt, tiny_config, env={"PYTHONPATH": str(old)})
    b = None
    pids: list[int] = []
    try:
        await a.initialize()
        pids.append(await server_pid(a))
        await a.kill()
        b = await start_raw(rt, tiny_config)
        await b.initialize()
        pids.append(await server_pid(b))
        assert pids[0] != pids[1]
        status = await asyncio.to_thread(mlxd, rt, "status")
        stop = await asyncio.to_thread(mlxd, rt, "stop")
        # Before: status showed this installation's daemon only, and the other one was still
        # running after `mlxd stop`.
        lines = status.stdout.splitlines()
        ours = [x for x in lines if f"pid {pids[1]}," in x]
        theirs = [x for x in lines if f"pid {pids[0]}," in x]
        assert status.returncode == 0 and len(ours) == len(theirs) == 1, status
        assert "(this installation)" in ours[0], status.stdout
        assert other in theirs[0] and str(old / "mlxd") in theirs[0], status.stdout
        assert stop.returncode == 0 and wait_gone(pids) == [], stop
        assert all(f"(pid {pid})" in stop.stdout for pid in pids), stop.stdout
        # Nothing is left to see or stop.
        assert (await asyncio.to_thread(mlxd, rt, "status")).returncode == 1
        assert (await asyncio.to_thread(mlxd, rt, "stop")).returncode == 1
    finally:
        for w in (a, b):
            if w is not None:
                await w.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _new_daemon(rt: Path, old: int, timeout: float = 30) -> int:
    """The pid of the first daemon process of `rt` other than `old` (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in daemon_pids(rt) if p != old]
        if new:
            return new[0]
        time.sleep(0.005)
    raise AssertionError("no new daemon started")


# Finding G (high): when the forwarder cannot bring up a new daemon after a crash (the new one is
# killed too, kill -9 twice in a row / the OOM killer again; or it cannot be started at all),
# the forwarder exits 1 ("the shared daemon exited with -9"): the editor loses mlxd for good
# (VS Code stops restarting after a few crashes; the window has no completions). At start the
# same failure serves in-process; after a crash it never does.
# Fixed: the window gets an in-process server of its own (forward._in_process).
@pytest.mark.parametrize("how", ["killed-again", "cannot-start"])
async def test_a_window_survives_a_recovery_that_cannot_start_a_daemon(
    rt, tmp_path, tiny_model, how
):
    """Steps: a window with a document open; kill -9 the daemon, then (killed-again) kill -9
    the new daemon as soon as its process exists, or (cannot-start) make daemon.log a directory
    first, so that no daemon can be started; the window's next requests must be answered
    (after at most a few -32803) and its forwarder must not exit."""
    d = await start_raw(rt, _config(tmp_path, tiny_model))
    try:
        await d.initialize()
        uri = "file:///p/kept.py"
        doc = {"uri": uri, "languageId": "python", "version": 1, "text": "def f("}
        d.send(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}
        )
        first = await server_pid(d)
        if how == "cannot-start":
            log = rt / "daemon.log"
            log.unlink()
            log.mkdir()  # start_daemon cannot open it: no daemon can be started
        os.kill(first, signal.SIGKILL)
        if how == "killed-again":
            second = await asyncio.to_thread(_new_daemon, rt, first)
            os.kill(second, signal.SIGKILL)
        answered = None
        for _ in range(5):
            try:
                d._next += 1
                d.send({"jsonrpc": "2.0", "id": d._next, "method": "mlxd/stats"})
                r = await d.response(d._next, timeout=90)
            except AssertionError as exc:  # the forwarder exited: no answer can come
                pytest.fail(f"the forwarder exited: {exc}")
            if "result" in r:
                answered = r
                break
            assert r["error"]["code"] == -32803, r
        assert answered is not None
        inline = {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": 6},
            "context": {"triggerKind": 1},
        }
        assert "result" in await d.request("textDocument/inlineCompletion", inline)
        assert d.proc.returncode is None and d.stray == []
    finally:
        await d.kill()
        with contextlib.suppress(OSError):
            (rt / "daemon.log").rmdir()


class Proxy:
    """A loopback HTTP proxy that answers 502 to everything and records what it was asked to
    forward: (path, Authorization header)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def __aenter__(self) -> Proxy:
        from aiohttp import web

        async def any_path(request: web.Request) -> web.Response:
            self.seen.append((request.path, request.headers.get("Authorization")))
            return web.Response(status=502)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


# Finding H (medium, a secret): the daemon is started with the whole environment of the window
# that started it, and huggingface_hub takes its proxy (HTTP_PROXY / HTTPS_PROXY / NO_PROXY, and
# the CA bundle: SSL_CERT_FILE, REQUESTS_CA_BUNDLE) from the process environment: every other
# window's downloads go through the first window's proxy, with that window's HF_TOKEN in the
# Authorization header (a debugging proxy, mitmproxy, another account's gateway sees it); and a
# window that needs its proxy to reach the Hub cannot download when another window started the
# daemon. The docs list HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE / HF_TOKEN as each window's own.
# Fixed: a window's download runs in a child process of that window's environment
# (models/hub_child.py), whatever the environment of the window that started the daemon.
@pytest.mark.parametrize("proxied", ["the first window", "the second window"])
async def test_a_windows_hub_download_never_goes_through_another_windows_proxy(
    rt, tmp_path, tiny_config, proxied
):
    """Steps: window A (started from a shell with HTTP(S)_PROXY set, and an HF_TOKEN of its
    own) starts the daemon; window B, HF_ENDPOINT = a loopback hub, HF_TOKEN = its own,
    local.model = an HF id; B's chat makes the daemon fetch the model. Or the other way round:
    B's shell has the proxy (B needs it to reach the Hub) and A's has none."""
    token = "hf_windowBsecret0123456789abcdef"
    second = tmp_path / "second.toml"
    second.write_text('[local]\nmodel = "someorg/some-model-4bit"\npreload = false\n')
    proxy_env = {k: "" for k in ("NO_PROXY", "no_proxy")}
    no_proxy = {k: "" for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")}
    async with Proxy() as proxy, Recorder() as hub:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            proxy_env[name] = proxy.url
        a_env, b_env = (
            (proxy_env, no_proxy) if proxied == "the first window" else (no_proxy, proxy_env)
        )
        a = await start_raw(rt, tiny_config, env={**a_env, "HF_TOKEN": "hf_windowA_own"})
        b = None
        try:
            await a.initialize()
            await server_pid(a)  # the daemon runs, with A's environment
            hf = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": token}
            b = await start_raw(rt, second, env={**b_env, **hf, "HF_HOME": str(tmp_path / "h")})
            await b.initialize()
            chat = {"messages": [{"role": "user", "content": "x"}], "maxTokens": 2}
            assert "error" in await b.request("mlxd/chat", chat)  # the hub has no such model
            asked = _hub_asked(hub.paths)
            if proxied == "the first window":
                # Before: proxy.seen = [('/api/models/someorg/some-model-4bit/revision/main',
                # 'Bearer hf_windowBsecret...'), ...] and the hub asked nothing.
                assert proxy.seen == [], proxy.seen
                assert asked, hub.paths
            else:
                # B's own proxy carries B's requests (before: none did, A had no proxy), with
                # B's token, never A's.
                assert proxy.seen and not asked, (proxy.seen, hub.paths)
                fetches = [(path, auth) for path, auth in proxy.seen if _hub_asked([path])]
                assert {auth for _, auth in fetches} == {f"Bearer {token}"}, proxy.seen
        finally:
            for w in (a, b):
                if w is not None:
                    await w.kill()


# Finding I (low-medium): the HTTP pools are shared by windows, with aiohttp's limits of 16
# connections per host and 64 in all: 16 streams of one window to a provider that has stopped
# answering (a hung proxy, a stalled local server, an outage) take every connection to that host,
# and another window's requests to the same provider wait for a connection until they time out
# ("timeout: no token within 10.0s", counted by its circuit breaker as the provider failing) and
# fall back, though the provider answers new connections. In-process each window has its own.
# Fixed: the shared HTTP pools have no connection cap (backends/pools.py).
async def test_one_windows_hung_streams_do_not_starve_another_window(rt, tmp_path, tiny_model):
    """Steps: one fake OpenAI-compatible provider that leaves its first 16 requests without
    headers and answers the rest at once; window A sends 16 chats to it (first_token_s 100);
    window B, same provider and default timeouts, sends one chat."""
    from tests.fakes.providers import FakeProvider, Reply

    async with FakeProvider() as fake:
        fake.enqueue(*[Reply.hang_before_headers() for _ in range(16)])
        fake.default = Reply.text(["fast answer"])
        common = (
            f'[local]\nmodel = "{tiny_model}"\npreload = false\n[backends.cloud]\n'
            f'protocol = "openai"\nbase_url = "{fake.openai_url}"\nmodel = "m"\n'
            '[routing]\ncloud = true\nchat = ["cloud", "local"]\n'
        )
        a_cfg, b_cfg = tmp_path / "a.toml", tmp_path / "b.toml"
        a_cfg.write_text(common + "[timeouts]\nfirst_token_s = 100\ntotal_s = 200\n")
        b_cfg.write_text(common)
        a = await start_raw(rt, a_cfg)
        b = await start_raw(rt, b_cfg)
        try:
            await a.initialize()
            await b.initialize()
            for n in range(16):
                chat = {"messages": [{"role": "user", "content": f"q{n}"}], "maxTokens": 2}
                a.send({"jsonrpc": "2.0", "id": f"hung{n}", "method": "mlxd/chat", "params": chat})
            for _ in range(200):
                if fake.request_count >= 16:
                    break
                await asyncio.sleep(0.05)
            assert fake.request_count == 16  # A's streams hang, each on a connection
            chat = {"messages": [{"role": "user", "content": "y"}], "maxTokens": 2}
            r = await b.request("mlxd/chat", chat)
            # Before: backend 'local', attempts [{'backend': 'cloud', 'error': 'timeout: no
            # token within 10.0s'}], and the provider never saw B's request (16 requests).
            assert r["result"]["backend"] == "cloud", r
        finally:
            await a.kill()
            await b.kill()


# Finding J (low): Ctrl-C in a terminal running `mlxd serve` (the forwarder, now the default)
# prints a KeyboardInterrupt traceback from selectors.poll; in-process `mlxd serve` ends quietly
# with 130 (cli/serve.py catches it).
@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("0", id="in-process"),  # held: the reference
        pytest.param("1", id="shared"),  # finding J, fixed: cli/__init__ catches it
    ],
)
async def test_ctrl_c_of_mlxd_serve_is_quiet(rt, tiny_config, mode):
    """Steps: `mlxd serve` (default: forwarding), initialize, SIGINT (Ctrl-C) to it."""
    d = await start_raw(rt, tiny_config, env={"MLXD_SHARED": mode}, parent=AS_IN_A_TERMINAL)
    try:
        await d.initialize()
        await server_pid(d)
        d.proc.send_signal(signal.SIGINT)
        why = await d.ended()
        # Before: "exit -2, stderr: Traceback ... KeyboardInterrupt"
        assert "Traceback" not in why and d.stray == [], why
    finally:
        await d.kill()


# Held (a regression guard, passes): window A (cloud off by its settings, its key handed over
# with mlxd/setApiKey, an excluded .env open, a chat and inline requests about it) and window B
# (cloud on, its own key, the same provider) in one daemon, before and after a kill -9 and the
# replay of both windows: the provider never sees A's secret text nor A's key, only B's key.
async def test_held_a_cloud_off_window_sends_nothing_through_another_across_a_crash(
    rt, tmp_path, tiny_model
):
    from tests.conftest import cloud_first_config
    from tests.fakes.providers import FakeProvider, Reply

    key_a, key_b = "sk-window-A-0123456789abcdef", "sk-window-B-0123456789abcdef"
    secret = "DB_PASSWORD=hunter2-window-a-only"
    async with FakeProvider() as fake:
        fake.default = Reply.text(["cloud answer"])
        kinds = ("chat", "complete", "inline")
        cfg = cloud_first_config(tmp_path / "m.toml", tiny_model, fake.openai_url, "K", kinds)
        a = await start_raw(rt, cfg)
        b = await start_raw(rt, cfg, env={"K": key_b})
        try:
            await a.initialize()
            await b.initialize()
            off = {"settings": {"mlxd": {"routing": {"cloud": False}}}}
            a.send({"jsonrpc": "2.0", "method": CHANGE, "params": off})
            await a.request("mlxd/setApiKey", {"backend": "cloud", "apiKey": key_a})
            doc = {"uri": "file:///p/.env", "languageId": "dotenv", "version": 1, "text": secret}
            a.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": doc},
                }
            )

            async def use_a() -> None:
                ask = {"messages": [{"role": "user", "content": secret}], "maxTokens": 2}
                assert (await a.request("mlxd/chat", ask))["result"]["backend"] == "local"
                inline = {
                    "textDocument": {"uri": "file:///p/.env"},
                    "position": {"line": 0, "character": len(secret)},
                    "context": {"triggerKind": 1},
                }
                assert "result" in await a.request("textDocument/inlineCompletion", inline)

            async def use_b() -> None:
                r = await b.request("mlxd/chat", {"messages": [{"role": "user", "content": "hi"}]})
                assert r["result"]["backend"] == "cloud", r

            await use_a()
            await use_b()
            await pid_after_kill(a, await server_pid(a))
            for _ in range(5):  # B recovers too: a request it sent too early fails -32803
                r = await b.request("mlxd/stats")
                if "result" in r:
                    break
                assert r["error"]["code"] == -32803, r
            await use_a()
            await use_b()
            raw = b"".join(r.raw for r in fake.requests)
            auth = {r.headers.get("authorization") for r in fake.requests}
            assert secret.encode() not in raw and b"hunter2" not in raw
            assert auth == {f"Bearer {key_b}"}, auth
        finally:
            await a.kill()
            await b.kill()


def _modes(finding: str) -> pytest.MarkDecorator:
    """In-process (the reference) and shared (the finding, fixed: the forwarder splits frames
    by the daemon's own rules, mlxd/frames.py)."""
    return pytest.mark.parametrize(
        "mode", [pytest.param("0", id="in-process"), pytest.param("1", id="shared")]
    )


# Finding K (medium): the forwarder splits the editor's stream with a framing of its own that
# has none of the hardening of the daemon's (transport/framing.py, tests/e2e/test_fuzz.py, all of
# which run in-process): a header block ended by "\n\n" (accepted in-process, fuzz-tested) is
# never found, so that message and every later one are swallowed: the window gets no answer
# again; and a Content-Length beyond any size makes the forwarder hold everything that follows
# in memory (in-process streams past it in bounded memory).
@_modes("finding K: the forwarder's framing swallows LF-only frames")
async def test_a_frame_with_lf_newlines_is_answered(rt, tiny_config, mode):
    """Steps: `mlxd serve`, initialize, then a mlxd/models request framed with "\\n" line
    endings (`Content-Length: N\\n\\n{...}`)."""
    d = await start_raw(rt, tiny_config, env={"MLXD_SHARED": mode})
    try:
        await d.initialize()
        body = json.dumps({"jsonrpc": "2.0", "id": "lf", "method": "mlxd/models"}).encode()
        d.send_bytes(b"Content-Length: %d\n\n" % len(body) + body)
        r = await d.response("lf", timeout=20)  # before (shared): no answer
        assert "result" in r, r
    finally:
        await d.kill()


@_modes("finding K: the forwarder buffers an endless body in memory")
async def test_a_length_beyond_any_size_never_grows_the_servers_memory(rt, tiny_config, mode):
    """Steps: `mlxd serve`, initialize, then `Content-Length: 999...9` (30 digits) and 128 MiB
    of zeros; the RSS of the process the editor started stays within 96 MiB of where it was."""
    from tests.e2e.test_fuzz import rss_kb

    d = await start_raw(rt, tiny_config, env={"MLXD_SHARED": mode})
    try:
        await d.initialize()
        await server_pid(d)
        base = rss_kb(d.proc.pid)
        d.send_bytes(b"Content-Length: " + b"9" * 30 + b"\r\n\r\n")
        assert d.proc.stdin is not None
        for _ in range(128):
            d.proc.stdin.write(b"\x00" * (1 << 20))
            await d.proc.stdin.drain()
        grown = rss_kb(d.proc.pid) - base
        assert grown < 96 * 1024, grown  # KiB; before (shared): ~130 MiB and growing
    finally:
        await d.kill()


@_modes("finding K: the forwarder takes a length from inside a cut body")
async def test_a_too_short_length_costs_one_message_at_most(rt, tiny_config, mode):
    """Steps: `mlxd serve`, initialize; a mlxd/chat frame whose Content-Length is 30 bytes
    short, its cut tail holding the text `Content-Length: 999999999`; then a valid mlxd/models
    request: it is answered (in-process reads the length at the end of the header line only;
    the forwarder takes the first `content-length:` anywhere in the block and waits for 1 GB)."""
    d = await start_raw(rt, tiny_config, env={"MLXD_SHARED": mode})
    try:
        await d.initialize()
        text = "see the header Content-Length: 999999999 in this text"
        msg = {"jsonrpc": "2.0", "id": "cut", "method": "mlxd/chat", "params": {"x": text}}
        body = json.dumps(msg).encode()
        cut = body.index(b"999999999") + len(b"999999999") - 30  # the length ends before it
        assert cut > 0
        d.send_bytes(b"Content-Length: %d\r\n\r\n" % cut + body)
        ok = json.dumps({"jsonrpc": "2.0", "id": "next", "method": "mlxd/models"}).encode()
        d.send_bytes(b"Content-Length: %d\r\n\r\n" % len(ok) + ok)
        r = await d.response("next", timeout=20)  # before (shared): no answer
        assert "result" in r, r
    finally:
        await d.kill()
