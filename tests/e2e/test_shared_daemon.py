"""Issue #19: one shared per-user daemon behind `mlxd serve --shared` forwarders.

Real forwarders over real stdio (pytest-lsp and raw clients), one real daemon process per test
in a runtime directory of its own (MLXD_RUNTIME_DIR), the tiny real model, a byte-counting fake
cloud. Every test leaves no daemon running (the fixture checks /proc, and kills what is left
so that a failure cannot leak one into the next test).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as T

from mlxd import runtime
from tests.conftest import _plain, chat_params, cloud_first_config, daemon
from tests.e2e.test_privacy import open_doc
from tests.e2e.test_protocol_errors import Raw
from tests.e2e.test_zero_bytes import every_kind
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import daemon_env, daemon_pids

pytestmark = pytest.mark.slow

KEY = "sk-shared-window-0123456789"


def mlxd(rt: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**daemon_env(), "MLXD_RUNTIME_DIR": str(rt)}
    cmd = [sys.executable, "-m", "mlxd", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.fixture
def rt() -> Iterator[Path]:
    """A runtime directory of this test's own; no daemon may outlive the test."""
    path = Path(tempfile.mkdtemp(prefix="mlxd-rt-"))  # short: a socket path has ~100 bytes
    try:
        yield path
    finally:
        log = path / "daemon.log"  # shown with a failing test's report ("Captured stdout")
        if log.exists():
            print(f"--- {log} ---\n{log.read_text(errors='replace')[-6000:]}")
        mlxd(path, "stop")
        left = wait_gone(daemon_pids(path))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
        assert not left, f"daemon(s) {left} still running after `mlxd stop`"


def shared(rt: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(rt), **(extra or {})}


async def stats(s) -> dict:
    return _plain(await s.request("mlxd/stats", {}))


async def test_two_windows_share_one_daemon_and_one_model_load(rt, tiny_config):
    async with daemon(tiny_config, env=shared(rt)) as a, daemon(tiny_config, env=shared(rt)) as b:
        ra = await a.request("mlxd/chat", chat_params("hello", maxTokens=3))
        rb = await b.request("mlxd/chat", chat_params("hello", maxTokens=3))
        assert ra.text and rb.text
        sa, sb = await stats(a), await stats(b)
        assert sa["server"]["pid"] == sb["server"]["pid"] == daemon_pids(rt)[0]
        assert sb["server"]["sessions"] == 2
        assert sb["modelLoads"] == 1  # one load for both windows
        # Documents are each window's own: B cannot ask about A's document.
        open_doc(a, "file:///p/only_a.py", "def f(")
        await a.request("mlxd/models", {})  # the didOpen is handled
        params = T.InlineCompletionParams(
            text_document=T.TextDocumentIdentifier("file:///p/only_a.py"),
            position=T.Position(0, 6),
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
        )
        with pytest.raises(Exception, match="not open"):
            await b.client.text_document_inline_completion_async(params)
        assert isinstance(
            await a.client.text_document_inline_completion_async(params), T.InlineCompletionList
        )
        async with daemon(tiny_config, env=shared(rt)) as late:  # joins with the model loaded
            assert (await late.wait_status("ready", timeout=30))["state"] == "ready"
        # A window that left (shutdown, exit) disturbs neither the others nor their documents.
        assert (await a.request("mlxd/chat", chat_params("still here", maxTokens=2))).text
        assert isinstance(
            await a.client.text_document_inline_completion_async(params), T.InlineCompletionList
        )
    assert len(daemon_pids(rt)) == 1  # the windows closed: it stays up for the next one
    async with daemon(tiny_config, env=shared(rt)) as again:  # reopened: the model is warm
        await again.request("mlxd/chat", chat_params("hello", maxTokens=3))
        assert (await stats(again))["modelLoads"] == 1


async def test_cloud_off_in_one_window_sends_0_bytes_while_the_other_uses_it(
    rt, tmp_path, tiny_model
):
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["x)"])
        kinds = ("chat", "complete", "inline")
        cfg = cloud_first_config(
            tmp_path / "m.toml",
            tiny_model,
            fake.openai_url,
            "SHARED_KEY",
            kinds,
            "[inline]\nmax_ms = 20000\n",
        )
        # Window "off" was started from an editor whose environment has no key, and turns the
        # cloud off; window "on" has the key in its own environment (not the daemon's).
        off_opts = {"routing": {"cloud": False}}
        async with daemon(cfg, env=shared(rt), init_options=off_opts) as off:
            async with daemon(cfg, env=shared(rt, {"SHARED_KEY": KEY})) as on:
                open_doc(off, "file:///p/main.py", "def f(")
                open_doc(on, "file:///p/main.py", "def f(")
                await every_kind(off)
                assert fake.request_count == 0 and fake.bytes_received == 0
                await every_kind(on)
                assert fake.request_count == 3  # the path was live, with the window's own key
                r = _plain(await on.request("mlxd/chat", chat_params("hi", maxTokens=2)))
                assert r["backend"] == "cloud", r  # the key came from this window's environment
                count, before = fake.request_count, fake.bytes_received
                await every_kind(off)
                assert fake.request_count == count and fake.bytes_received == before


async def test_cancel_in_one_window_leaves_the_other_running(rt, tmp_path, slow_tiny_model):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{slow_tiny_model}"\npreload = false\n')
    async with daemon(cfg, env=shared(rt)) as a, daemon(cfg, env=shared(rt)) as b:
        await b.request("mlxd/chat", chat_params("warm", maxTokens=1))  # loaded
        long_id, long_a = a.start("mlxd/chat", chat_params("count", "ta", maxTokens=400))
        for _ in range(600):  # until A streams
            if a.deltas("ta"):
                break
            await asyncio.sleep(0.05)
        assert a.deltas("ta")
        _, short_b = b.start("mlxd/chat", chat_params("go on", "tb", maxTokens=8))
        a.cancel(long_id)
        with pytest.raises(Exception, match="cancel|Cancel|-32800"):
            await asyncio.wait_for(long_a, 60)
        rb = await asyncio.wait_for(short_b, 60)
        rb = _plain(rb)
        assert rb["text"] and rb["finishReason"] in ("length", "stop")


async def start_raw(
    rt: Path,
    config: Path | None,
    *,
    cwd: Path | None = None,
    env: dict | None = None,
    parent: list[str] | None = None,
) -> Raw:
    cmd = [*(parent or []), sys.executable, "-m", "mlxd", "serve"]
    cmd += ["--config", str(config)] if config else []
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**daemon_env(), **shared(rt), **(env or {})},
        cwd=cwd,
        limit=1 << 24,
    )
    return Raw(proc)


async def test_a_stale_socket_file_is_replaced(rt, tiny_config):
    from mlxd import runtime

    stale = runtime.Paths.at(rt).socket
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))  # a crashed daemon's socket file: nobody listens on it
    dead.close()
    assert stale.exists()
    async with daemon(tiny_config, env=shared(rt)) as s:
        assert (await stats(s))["server"]["pid"] == daemon_pids(rt)[0]


async def test_two_forwarders_racing_start_one_daemon(rt, tiny_config):
    async def window() -> int:
        async with daemon(tiny_config, env=shared(rt)) as s:
            pid = (await stats(s))["server"]["pid"]
            await asyncio.sleep(0.5)  # both windows are up together
            return pid

    pids = await asyncio.gather(*(window() for _ in range(3)))
    assert len(set(pids)) == 1 and daemon_pids(rt) == [pids[0]]
    log = (rt / "daemon.log").read_text()
    assert log.count(" serving ") == 1


async def test_the_daemon_exits_after_idle_exit_s_without_sessions(rt, tmp_path, tiny_model):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n[shared]\nidle_exit_s = 1\n')
    async with daemon(cfg, env=shared(rt)) as s:
        pid = (await stats(s))["server"]["pid"]
        await asyncio.sleep(1.5)  # a live session keeps it up past idle_exit_s
        assert _alive(pid)
    assert wait_gone([pid]) == []
    assert not (runtime.Paths.at(rt).socket).exists()


async def test_status_and_stop(rt, tiny_config):
    async with daemon(tiny_config, env=shared(rt)) as s:
        await s.request("mlxd/chat", chat_params("hi", maxTokens=1))
        out = mlxd(rt, "status")
        assert out.returncode == 0 and "sessions: 1" in out.stdout and "model:" in out.stdout
    stop = mlxd(rt, "stop")
    assert stop.returncode == 0 and wait_gone(daemon_pids(rt)) == []
    assert mlxd(rt, "status").returncode == 1


@pytest.mark.serial
async def test_eof_ends_the_forwarder_within_a_second(rt, tiny_config):
    d = await start_raw(rt, tiny_config)
    await d.initialize()
    assert d.proc.stdin is not None
    d.proc.stdin.close()
    start = time.monotonic()
    await asyncio.wait_for(d.proc.wait(), 10)
    assert time.monotonic() - start < 1.0
    assert daemon_pids(rt)  # the daemon stays for the next window


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_another_user_cannot_use_the_socket(rt, tiny_config):
    """The 0700 directory keeps another uid out; and if it were opened up (a misconfigured
    MLXD_RUNTIME_DIR), the daemon's peer-uid check still refuses that uid."""
    async with daemon(tiny_config, env=shared(rt)):
        sock = runtime.Paths.at(rt).socket
        probe = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied")
    raise SystemExit
try:
    s.sendall(b'MLXD1 20\\n{"control": "status"}')
    s.settimeout(10)
    data = s.recv(4096)
except OSError:
    data = b""
print("reply:", data)
"""
        nobody = dict(user=65534, group=65534, extra_groups=[])
        system_python = "/usr/bin/python3"  # the venv's is not another user's to run
        if not os.access(system_python, os.X_OK):
            pytest.skip("no system python3 for the other user")
        run = [system_python, "-c", probe, str(sock)]
        out = subprocess.run(run, capture_output=True, text=True, timeout=30, **nobody)
        assert out.stdout.strip() == "denied", out
        os.chmod(rt, 0o711)
        os.chmod(sock, 0o666)
        out = subprocess.run(run, capture_output=True, text=True, timeout=30, **nobody)
        os.chmod(rt, 0o700)
        assert out.stdout.strip() == "reply: b''", out  # hung up, nothing told
        assert "refused a connection from uid 65534" in (rt / "daemon.log").read_text()


async def test_kill_9_of_the_daemon_fails_the_requests_in_flight_and_later_ones_work(
    rt, tmp_path, slow_tiny_model
):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{slow_tiny_model}"\npreload = false\n')
    d = await start_raw(rt, cfg)
    try:
        await d.initialize()
        uri = "file:///p/kept.py"
        doc = {"uri": uri, "languageId": "python", "version": 1, "text": "def f("}
        d.send(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}
        )
        first = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        chat = {"messages": [{"role": "user", "content": "count"}], "maxTokens": 2000}
        d.send({"jsonrpc": "2.0", "id": "long", "method": "mlxd/chat", "params": chat})
        await asyncio.sleep(1.0)  # in flight in the daemon
        os.kill(first, signal.SIGKILL)
        failed = await d.response("long", timeout=30)
        assert failed["error"]["code"] == -32803 and "daemon stopped" in failed["error"]["message"]
        later = await d.request(
            "mlxd/chat", {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}
        )
        assert "result" in later and later["result"]["text"], later
        second = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        assert second != first and daemon_pids(rt) == [second]
        # The new daemon serves this window's document (replayed), not "not open".
        inline = {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": 6},
            "context": {"triggerKind": 1},
        }
        r = await d.request("textDocument/inlineCompletion", inline)
        assert "result" in r, r
        # The replayed initialize's answer was not forwarded: one initialize result only.
        assert sum(1 for f in d.frames if "capabilities" in (f.get("result") or {})) == 1
    finally:
        if d.proc.returncode is None:
            await d.kill()


async def test_log_records_go_to_their_own_window_only(rt, tiny_config):
    async with daemon(tiny_config, env=shared(rt)) as a, daemon(tiny_config, env=shared(rt)) as b:
        a.client.workspace_did_change_configuration(
            T.DidChangeConfigurationParams(settings={"mlxd": {"routing": {"cloud": "yes-please"}}})
        )
        for _ in range(200):  # the record is sent from the event loop after the handler
            if any("routing.cloud" in line for line in a.logs):
                break
            await asyncio.sleep(0.05)
        assert any("routing.cloud" in line for line in a.logs), a.logs
        await b.request("mlxd/models", {})
        assert not any("routing.cloud" in line for line in b.logs), b.logs


async def test_each_window_reads_its_own_mlxd_config_relative_to_its_own_directory(
    rt, tmp_path, tiny_model
):
    """The daemon was started by another window: MLXD_CONFIG and the working directory are the
    ones of the editor that started this forwarder."""
    first = tmp_path / "first"
    first.mkdir()
    (first / "m.toml").write_text(f'[local]\nmodel = "{tiny_model}"\npreload = false\n')
    second = tmp_path / "second"
    second.mkdir()
    (second / "m.toml").write_text(
        f'[local]\nmodel = "{tiny_model}"\npreload = false\n[backends.mine]\nprotocol = "mlx"\n'
        f'model = "{tiny_model}"\n'
    )
    windows = [
        await start_raw(rt, None, cwd=where, env={"MLXD_CONFIG": "m.toml"})
        for where in (first, second)
    ]
    try:
        backends = []
        for w in windows:
            await w.initialize()
            models = (await w.request("mlxd/models"))["result"]["models"]
            backends.append(sorted(m["backend"] for m in models))
        assert backends == [["local"], ["local", "mine"]]
    finally:
        for w in windows:
            await w.kill()


async def test_windows_share_the_http_pool_of_their_timeout_settings(rt, tmp_path, tiny_model):
    # Item 2: the HTTP connection pools are the process's. Window B's request goes over the
    # connection window A's opened (same client port); window C, with other timeouts, has a
    # pool of its own (its settings are never another window's: keyed by them).
    chat = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text(["cloud answer"])
        same = cloud_first_config(tmp_path / "a.toml", tiny_model, fake.openai_url, "K", ("chat",))
        other = cloud_first_config(
            tmp_path / "c.toml",
            tiny_model,
            fake.openai_url,
            "K",
            ("chat",),
            "[timeouts]\nidle_s = 29\n",
        )
        windows = [await start_raw(rt, cfg, env={"K": KEY}) for cfg in (same, same, other)]
        try:
            for w in windows:
                await w.initialize()
            for w in windows:
                r = await w.request("mlxd/chat", chat)
                assert r["result"]["backend"] == "cloud", r
            a, b, c = (rec.peer for rec in fake.requests)
            assert a is not None and b == a  # one pool for A and B: the connection reused
            assert c != a  # C's own pool (idle_s = 29): a connection of its own
        finally:
            for w in windows:
                await w.kill()
