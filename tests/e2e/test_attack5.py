# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""Attacks on the shared daemon after session 5's merge (mlxd status/stop of every daemon,
-32803 with a reason, settings-in-force replay, per-window downloads and CA). Each test is one
finding; a strict xfail names what still breaks, the others were fixed on this branch
(each failed before its fix). Real forwarders over real stdio, one real
daemon per test in a runtime directory of its own (stopped, then killed if left)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from tests.e2e.test_shared_daemon import (  # noqa: F401
    mlxd,
    rt,
    start_raw,
    wait_gone,
)

pytestmark = pytest.mark.slow


class AnswerOnce:
    """A Unix socket in the runtime directory that answers every hello with `answer` (a line):
    a daemon of another mlxd version whose control answers have another shape."""

    def __init__(self, path: Path, answer: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(1 << 16)
                    conn.sendall(self.answer + b"\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


# Finding 1 (low): `mlxd status` now asks every daemon socket of the runtime directory, of any
# version, and prints its answer as if it had this version's shape: a daemon of another version
# whose status lacks a key (uptime_s, sessions, models, rssBytes) makes `mlxd status` die with a
# KeyError traceback, and nothing after it (this installation's own daemon included) is listed.
# Fixed: control._show shows what the answer has (cli/control.py).
@pytest.mark.parametrize(
    "answer",
    [b'{"pid": 4242, "version": "9.9.9"}', b'{"pid": "x", "models": [], "rssBytes": null}'],
    ids=["keys-missing", "keys-of-other-types"],
)
def test_status_lists_a_daemon_whose_answer_has_another_shape(rt, answer):
    """Steps: a socket mlxd-9.9.9.sock in the runtime directory that answers status with another
    shape; `mlxd status` must exit without a traceback and name that daemon."""
    fake = AnswerOnce(rt / "mlxd-9.9.9.sock", answer)
    try:
        out = mlxd(rt, "status")
    finally:
        fake.close()
    assert "Traceback" not in out.stderr, out.stderr
    assert "9.9.9" in out.stdout, out


# Finding 1's sibling: `mlxd stop` reads the stop answer's "pid" the same way (KeyError when a
# daemon of another version answers without one). Fixed with finding 1.
def test_stop_takes_a_stop_answer_of_another_shape(rt):
    """Steps: a socket mlxd-9.9.9.sock that answers {"stopping": true} (no pid); `mlxd stop`
    must exit 0 without a traceback and say it stopped that daemon."""
    fake = AnswerOnce(rt / "mlxd-9.9.9.sock", b'{"stopping": true}')
    try:
        out = mlxd(rt, "stop")
    finally:
        fake.close()
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0 and "stopped the mlxd 9.9.9 daemon" in out.stdout, out


# Finding 2 (medium): after a crash the forwarder checks the runtime directory again before it
# starts a new daemon; when that directory is now unusable (its mode or owner changed, or it is
# gone with /run/user/UID at logout) the forwarder exits 1 ("runtime directory unusable") and
# the window loses mlxd, though a window that finds the directory unusable at start is served
# in-process (forward._fallback), as is one whose new daemon cannot be started (finding G).
# The initialize in flight at the crash (finding B) is then never answered.
# Fixed: the forwarder's reconnect serves the window in-process then too (cli/forward.py).
async def test_a_window_survives_a_runtime_dir_made_unusable_before_a_crash(rt, tiny_config):
    """Steps: a window served by the shared daemon; chmod 755 the runtime directory (as another
    tool, or a swapped directory, would leave it); kill -9 the daemon; the window's next
    requests must be answered (after at most a few -32803) and its forwarder must not exit."""
    d = await start_raw(rt, tiny_config)
    try:
        await d.initialize()
        first = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        os.chmod(rt, 0o755)
        os.kill(first, signal.SIGKILL)
        answered = None
        for _ in range(5):
            try:
                r = await d.request("mlxd/stats")
            except AssertionError as exc:  # the forwarder exited: no answer can come
                pytest.fail(f"the forwarder exited: {exc}")
            if "result" in r:
                answered = r
                break
            assert r["error"]["code"] == -32803, r
        assert answered is not None
        assert d.proc.returncode is None and d.stray == []
    finally:
        os.chmod(rt, 0o700)
        await d.kill()


# Finding 3 (high, privacy): a conversation about an excluded document stays local only while
# the server that answered it lives (taint rule 1), or in a daemon that took the window over
# after a crash (rule 3, `recovered`). `mlxd stop` (what the docs say to run after upgrading
# mlxd, and now it stops every daemon) ends each window's session: the editor starts
# `mlxd serve` again, keeps its chat panel's history, and the next follow-up of that
# conversation (the question about .env, the local model's answer about it) reaches a fresh
# session that knows nothing of it and goes to the cloud. Killing the `mlxd serve` process, or
# the editor's own "restart server", does the same (in-process too): the kind is "a new
# session for an old conversation".
# Fixed: rule 1's memory is kept per user in the runtime directory (taint_file.py).
async def test_a_conversation_tainted_before_mlxd_stop_stays_local_after_it(
    rt, tmp_path, tiny_model
):
    """Steps: a window asks about its open .env (excluded; answered locally) and follows up
    (local: tainted); `mlxd stop`; the editor starts mlxd serve again, initializes and re-opens
    the .env; the same follow-up must not reach the cloud provider."""
    from tests.conftest import cloud_first_config
    from tests.fakes.providers import FakeProvider, Reply

    key = "sk-attack5-0123456789abcdef"
    async with FakeProvider(require_key=key) as fake:
        fake.default = Reply.text(["cloud answer"])
        cfg = cloud_first_config(
            tmp_path / "m.toml",
            tiny_model,
            fake.openai_url,
            "K",
            ("chat",),
            'exclude = ["**/.env"]\n',
        )
        uri = "file:///p/.env"
        doc = {"uri": uri, "languageId": "dotenv", "version": 1, "text": "DB_PASSWORD=hunter2\n"}
        opened = {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": doc},
        }
        d = await start_raw(rt, cfg, env={"K": key})
        d2 = None
        try:
            await d.initialize()
            d.send(opened)
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
            out = await asyncio.to_thread(mlxd, rt, "stop")
            assert out.returncode == 0, out
            await d.wait(15)
            d2 = await start_raw(rt, cfg, env={"K": key})  # the editor restarts mlxd serve
            await d2.initialize()
            d2.send(opened)
            r = await d2.request("mlxd/chat", follow)
            assert "result" in r, r
            assert fake.request_count == 0 and fake.bytes_received == 0, (r, fake.requests)
        finally:
            for w in (d, d2):
                if w is not None:
                    await w.kill()


# Finding 4 (medium): in shared mode a window that closes (the editor quits, or the user closes
# it to stop a multi-GB download on a metered link) leaves its Hugging Face download running:
# the child of that window's environment (its HF_TOKEN, its proxy) goes on fetching for nobody,
# then the daemon loads the model into memory and holds it until idle_exit_s (300 s). In-process,
# closing the window stops the download at once and no partial file stays
# (test_download.test_exit_mid_download_is_prompt_and_leaves_no_partial_file); and a *cancel*
# in shared mode stops the loads no other window's config names (docs/protocol.md, Cancel):
# a window leaving did not. The shared daemon exists so that a reopened window (VS Code's
# Reload Window) finds its work warm, and cancelling at once would restart a 4 GB download at
# each reload.
# Fixed: a load no open window of its environment names goes on for shared.download_grace_s
# (default 30 s), then stops (models/inflight.py); the reload and other-environment cases are in
# test_shared_download_grace.py.
async def test_a_windows_download_stops_when_the_window_closes(rt, tmp_path, tiny_model):
    """Steps: the only window of a shared daemon (download_grace_s = 1) preloads a Hub model
    from a slow loopback Hub (~30 s); once bytes flow, the editor closes the window (shutdown,
    exit, EOF); within the grace + 5 s its download child must be gone and the Hub must see
    the transfer end."""
    from tests.e2e.test_download import (
        REPO_ID,
        _download_children,
        hf_env,
        wait_for,
    )
    from tests.fakes.hf_hub import FakeHub

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[local]\nmodel = "{REPO_ID}"\npreload = true\n[shared]\ndownload_grace_s = 1\n'
    )
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.5) as hub:
        before = set(_download_children(hub.url))
        d = await start_raw(rt, cfg, env=hf_env(tmp_path, hub.url))
        try:
            await d.initialize()
            await wait_for(lambda: hub.bytes_sent > 50_000, timeout=60)
            children = [p for p in _download_children(hub.url) if p not in before]
            assert len(children) == 1, children
            assert "result" in await d.request("shutdown")
            d.send({"jsonrpc": "2.0", "method": "exit"})
            assert d.proc.stdin is not None
            d.proc.stdin.close()
            assert await d.wait(10) == 0
            try:
                await wait_for(lambda: children[0] not in _download_children(hub.url), timeout=6)
            except TimeoutError:
                pytest.fail(
                    f"the download goes on after its window closed ({hub.bytes_sent} of "
                    f"{hub.total_bytes} bytes sent)"
                )
            assert hub.bytes_sent < hub.total_bytes
        finally:
            await d.kill()


# Finding 5 (medium): SIGTERM to the shared daemon (`kill <pid>`, systemd at logout, a
# shutdown) ends its sessions with -32803 "stopped (SIGTERM)" and a goodbye; but the daemon then
# leaves with os._exit at once, and what its sockets had not yet sent is lost: a window whose
# forwarder was slow to read (a long stream, a busy editor) gets neither. Its forwarder then
# takes the SIGTERM for a crash: it answers "a new one serves this window, send the request
# again" and starts a new daemon, which the SIGTERM was meant to end. `mlxd stop` leaves a
# marker for exactly this (forward._recover); SIGTERM left none.
# Fixed: the daemon leaves the marker, with its reason, however it is stopped (cli/daemon.py);
# the forwarder's answer names that reason (cli/forward.py).
async def test_sigterm_to_the_daemon_is_a_stop_even_when_its_goodbye_is_lost(
    rt, tmp_path, tiny_model
):
    """Steps: a window streams a long chat; its forwarder stops reading (SIGSTOP) until the
    daemon's socket buffers are full; SIGTERM the daemon; once it is gone, the forwarder reads
    again (SIGCONT). The chat must fail with the SIGTERM as its reason, no new daemon may
    start, and the forwarder must end."""
    from tests.kit import daemon_pids

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{tiny_model}"\npreload = true\n')
    d = await start_raw(rt, cfg)
    try:
        await d.initialize()
        first = (await d.request("mlxd/stats"))["result"]["server"]["pid"]
        warm = {"messages": [{"role": "user", "content": "x"}], "maxTokens": 2}
        assert "result" in await d.request("mlxd/chat", warm)  # the model is loaded
        chat = {
            "messages": [{"role": "user", "content": "count"}],
            "maxTokens": 100_000,
            "partialResultToken": "p",
        }
        d.send({"jsonrpc": "2.0", "id": "long", "method": "mlxd/chat", "params": chat})
        await asyncio.sleep(1.0)
        os.kill(d.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(4.0)  # the stream fills the daemon's socket buffers
        os.kill(first, signal.SIGTERM)
        gone = await asyncio.to_thread(wait_gone, [first])
        os.kill(d.proc.pid, signal.SIGCONT)
        assert gone == [], "the daemon did not exit on SIGTERM"
        r = await d.response("long", timeout=30)
        assert r["error"]["code"] == -32803 and "SIGTERM" in r["error"]["message"], r
        assert await d.wait(10) is not None
        await asyncio.sleep(1.0)
        assert daemon_pids(rt) == [], "a new daemon was started after the SIGTERM"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(d.proc.pid, signal.SIGCONT)
        await d.kill()


# Finding 6 (low): a path in a window's environment is the editor's, relative to the editor's
# working directory (OpenSSL and huggingface_hub resolve it against their process's), but the
# shared daemon takes SSL_CERT_FILE / SSL_CERT_DIR as they are and checks them from its own
# working directory (/): a window whose SSL_CERT_FILE is relative (`certs/corp.pem`, from a
# project's .env or a dev shell) is served in-process with its own CA, and in shared mode with
# the system's instead (backends/pools.py ca_settings; the download child, run in /, reads
# HF_HOME / SSL_CERT_FILE / REQUESTS_CA_BUNDLE relative to / the same way). The sibling of
# test_attack_shared's relative local.model (fixed: resolved against the window's directory).
# Fixed for the cloud's CA (pools.ca_settings takes the window's directory; SSL_CERT_DIR's list
# of directories is kept); the download child still runs in / (not fixed: reported).
@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("0", id="in-process"),
        pytest.param("1", id="shared"),
    ],
)
async def test_a_relative_ca_bundle_is_the_windows_own(rt, tmp_path, tiny_model, mode):
    """Steps: the window's working directory holds the test CA as certs/ca.pem and its
    SSL_CERT_FILE is that relative path; it asks the loopback HTTPS provider for a chat."""
    import shutil

    from tests.conftest import cloud_first_config
    from tests.fakes.providers import FakeProvider
    from tests.fakes.tls import make_tls

    ca, server = make_tls(tmp_path)
    project = tmp_path / "project"
    (project / "certs").mkdir(parents=True)
    shutil.copy(ca, project / "certs" / "ca.pem")
    env = {"SSL_CERT_FILE": "certs/ca.pem", "SSL_CERT_DIR": "", "K": "sk-rel", "MLXD_SHARED": mode}
    async with FakeProvider(ssl_context=server) as fake:
        cfg = cloud_first_config(tmp_path / "c.toml", tiny_model, fake.openai_url, "K", ("chat",))
        d = await start_raw(rt, cfg, cwd=project, env=env)
        try:
            await d.initialize()
            chat = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 4}
            r = await d.request("mlxd/chat", {**chat, "backend": "cloud"})
            assert "result" in r and r["result"]["backend"] == "cloud", r
        finally:
            await d.kill()


# Finding 6's sibling in the download child: models/hub_child.py ran the child in / with the
# window's environment as it is, so a relative HF_HOME / HF_HUB_CACHE (or SSL_CERT_FILE,
# REQUESTS_CA_BUNDLE) named a directory under / instead of under the editor's working
# directory: a window whose model is cached in its project's `hf` (HF_HOME=hf) was told it is
# offline and uncached in shared mode, and found it in-process.
# Fixed: the window's path-valued Hub variables are made absolute against its working directory
# (models/hub_env.py) and the child runs in that directory (hub_child.py).
@pytest.mark.parametrize("mode", ["0", "1"], ids=["in-process", "shared"])
@pytest.mark.parametrize(
    "variables",
    [
        {"HF_HOME": "hf"},
        {"HF_HUB_CACHE": "hf/hub"},
        {"HF_HOME": "./elsewhere", "HF_HUB_CACHE": "hf/hub"},
    ],
    ids=["HF_HOME", "HF_HUB_CACHE", "both"],
)
async def test_a_relative_hf_home_is_the_windows_own(rt, tmp_path, tiny_model, mode, variables):
    """Steps: the window's working directory holds a Hugging Face cache (hf/hub) with the
    model; HF_HOME=hf or HF_HUB_CACHE=hf/hub (relative), HF_HUB_OFFLINE=1; the config names the
    repo id; a chat must be answered by the local model."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = "mlx-community/tiny-attack5-4bit"
    project = tmp_path / "project"
    cached = project / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny_model, cached / "snapshots" / commit)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(commit)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\nmodel = "{repo}"\npreload = false\n')
    env = {**variables, "HF_HUB_OFFLINE": "1", "MLXD_SHARED": mode}
    d = await start_raw(rt, cfg, cwd=project, env=env)
    try:
        await d.initialize()
        chat = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}
        r = await d.request("mlxd/chat", chat)
        assert "result" in r and r["result"]["backend"] == "local", r
    finally:
        await d.kill()
