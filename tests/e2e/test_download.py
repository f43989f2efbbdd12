"""Hugging Face model downloads over real stdio, against a loopback fake Hub (tests/fakes/hf_hub).

Each test gives the daemon a fresh HF cache (HF_HOME, HF_HUB_CACHE under tmp_path) and the
fake's URL as HF_ENDPOINT: huggingface_hub reads both when the daemon imports it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import Session, chat_params, daemon, write_config
from tests.e2e.test_shared_daemon import rt  # noqa: F401 (a fixture)
from tests.fakes.hf_hub import COMMIT, FakeHub
from tests.kit import free_port

pytestmark = pytest.mark.slow

REPO_ID = "mlx-community/tiny-mlxd-test-4bit"


def hf_env(tmp_path: Path, endpoint: str, offline: bool = False) -> dict[str, str]:
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


@pytest.fixture(params=["in-process", "shared"])
def mode(request: pytest.FixtureRequest, rt: Path) -> dict[str, str]:  # noqa: F811
    """The daemon's environment for a mode: in-process, or a shared daemon of this test's own
    runtime directory (it downloads in a child of the window's environment: hub_child.py)."""
    return {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(rt)} if request.param == "shared" else {}


def hf_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mlxd.toml", f'[local]\nmodel = "{REPO_ID}"\npreload = true\n')


def load_progress(s: Session) -> tuple[str, list[dict[str, Any]]]:
    """The (only) load token and its work-done values, in order."""
    tokens = [t for t in s.progress if str(t).startswith("mlxd/load/")]
    assert len(tokens) == 1, tokens
    return tokens[0], s.progress[tokens[0]]


async def wait_for(cond: Any, timeout: float = 60) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT


async def test_download_reports_bytes_then_answers_a_chat(
    tmp_path: Path, tiny_model: Path, mode: dict[str, str]
) -> None:
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.01) as hub:
        async with daemon(hf_config(tmp_path), env={**hf_env(tmp_path, hub.url), **mode}) as s:
            await s.wait_status("ready", timeout=120)
            _, values = load_progress(s)
            assert values[0]["kind"] == "begin" and values[0]["cancellable"] is True
            assert values[-1]["kind"] == "end"
            downloads = [v for v in values if "downloading" in (v.get("message") or "")]
            assert len(downloads) >= 2, values
            for v in downloads:
                assert re.fullmatch(rf"downloading {REPO_ID}: \d+ / 1 MB \(\d+%\)", v["message"]), v
            pcts = [v["percentage"] for v in values if v["kind"] == "report"]
            assert pcts == sorted(pcts) and pcts[0] < pcts[-1], pcts
            assert downloads[-1]["message"].endswith("(100%)")
            assert hub.bytes_sent == hub.total_bytes

            r = await s.request("mlxd/chat", chat_params("hello", maxTokens=8))
            assert r.backend == "local" and r.usage.completionTokens > 0
    assert (snapshot(tmp_path) / "model.safetensors").is_file()
    # Offline now (the hub is gone): the cached copy loads, and nothing says "offline".
    async with daemon(hf_config(tmp_path), env={**hf_env(tmp_path, hub.url), **mode}) as s:
        status = await s.wait_status("ready", "error", timeout=120)
        assert status["state"] == "ready", status
        assert not s.messages


async def test_cancel_stops_the_download_and_a_later_request_starts_it_again(
    tmp_path: Path, tiny_model: Path, mode: dict[str, str]
) -> None:
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.05) as hub:
        async with daemon(hf_config(tmp_path), env={**hf_env(tmp_path, hub.url), **mode}) as s:
            # mid-way through the weights (944 kB at 16 kB per 50 ms: about 3 s)
            await wait_for(lambda: hub.bytes_sent > 400_000 and s.progress)
            token, _ = load_progress(s)
            s.client.protocol.notify(
                T.WINDOW_WORK_DONE_PROGRESS_CANCEL, T.WorkDoneProgressCancelParams(token=token)
            )
            status = await s.wait_status("error", timeout=30)
            assert "cancelled" in status["message"] and REPO_ID in status["message"]
            await asyncio.wait_for(hub.aborted.wait(), 30)  # the daemon hung up mid-file
            assert "model.safetensors" in hub.aborted_files
            _, values = load_progress(s)
            assert values[-1]["kind"] == "end" and "cancelled" in values[-1]["message"]
            assert not [m for m in s.messages if "cancelled" in m.message]  # the user knows
            # ... and their own cancel is no error in the log (VS Code showed it as [error])
            logged = [m for m in s.client.log_messages if "was cancelled" in m.message]
            assert logged and all(m.type == T.MessageType.Info for m in logged), logged
            assert not (snapshot(tmp_path) / "model.safetensors").exists()
            # huggingface_hub drops its partial file (unique name per try): nothing half-written
            blobs = snapshot(tmp_path).parent.parent / "blobs"
            await wait_for(lambda: not list(blobs.glob("*.incomplete")), timeout=10)
            sent_before_retry = hub.bytes_sent

            hub.delay_s = 0
            r = await s.request("mlxd/chat", chat_params("hello", maxTokens=8))
            assert r.backend == "local" and r.usage.completionTokens > 0
            assert s.statuses[-1]["state"] == "ready"
            assert hub.bytes_sent > sent_before_retry  # the retry downloaded the weights
    assert (snapshot(tmp_path) / "model.safetensors").read_bytes() == (
        tiny_model / "model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("how", ["connection refused", "HF_HUB_OFFLINE"])
async def test_offline_says_so_once_with_what_to_do(tmp_path: Path, how: str) -> None:
    env = hf_env(tmp_path, f"http://127.0.0.1:{free_port()}", offline=how == "HF_HUB_OFFLINE")
    async with daemon(hf_config(tmp_path), env=env) as s:
        status = await s.wait_status("error", timeout=60)
        text = status["message"]
        assert REPO_ID in text and "offline" in text and "local.model" in text, text
        assert "Traceback" not in text
        with pytest.raises(JsonRpcException) as err:  # a request retries the load: same error
            await s.request("mlxd/chat", chat_params("hello", maxTokens=8))
        assert "offline" in err.value.message and "Traceback" not in err.value.message
        shown = [m for m in s.messages if REPO_ID in m.message]
        assert len(shown) == 1 and shown[0].type == T.MessageType.Error
        assert "offline" in shown[0].message


def _download_children(endpoint: str) -> list[int]:
    """The processes running a shared daemon's download (models/hub_child.py) from the Hub at
    `endpoint`: each test's own FakeHub, so a download of a test running beside it (xdist)
    is not counted."""
    want = b"HF_ENDPOINT=" + endpoint.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"mlxd.models.hub_child" in cmd and str(os.getpid()).encode() not in cmd:
                if want in env:
                    found.append(int(entry.name))
    return found


async def test_a_shared_daemons_download_ends_with_the_daemon(
    tmp_path: Path,
    tiny_model: Path,
    rt: Path,  # noqa: F811
) -> None:
    """The download runs in a child of the window's environment: when the daemon is killed
    (kill -9), the child stops too (its stdin closes)."""
    from tests.kit import daemon_pids

    env = {**hf_env(tmp_path, ""), "MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(rt)}
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.2) as hub:
        env["HF_ENDPOINT"] = hub.url
        before = set(_download_children(hub.url))
        async with daemon(hf_config(tmp_path), env=env) as s:
            await wait_for(lambda: hub.bytes_sent > 50_000 and s.progress)
            children = [p for p in _download_children(hub.url) if p not in before]
            assert len(children) == 1, children
            for pid in daemon_pids(rt):
                os.kill(pid, 9)
            # Before the download ran in the daemon: gone with it. Now its child must not
            # outlive it (the forwarder's new daemon starts a download of its own).
            await wait_for(lambda: children[0] not in _download_children(hub.url), timeout=15)


@pytest.mark.serial
async def test_exit_mid_download_is_prompt_and_leaves_no_partial_file(
    tmp_path: Path, tiny_model: Path
) -> None:
    """The download would need ~10 s more; shutdown + exit must not wait for it."""
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.2) as hub:
        async with daemon(hf_config(tmp_path), env=hf_env(tmp_path, hub.url)) as s:
            await wait_for(lambda: hub.bytes_sent > 100_000 and s.progress)
            t0 = time.monotonic()
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"the daemon took {elapsed:.1f} s to exit"
        assert hub.bytes_sent < hub.total_bytes
    blobs = snapshot(tmp_path).parent.parent / "blobs"
    assert not list(blobs.glob("*.incomplete"))


async def _doctor(config: Path, env: dict[str, str]) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mlxd", "doctor", "--config", str(config),
        env={**os.environ, **env}, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode(), err.decode()


async def test_doctor_shows_the_download_and_the_offline_message(
    tmp_path: Path, tiny_model: Path
) -> None:
    config = hf_config(tmp_path)
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.01) as hub:
        out, err = await _doctor(config, hf_env(tmp_path, hub.url))
    assert f"downloading {REPO_ID}: 1 / 1 MB (100%)" in err
    assert re.search(r"\[ok  \] model +loads in", out), out

    out, err = await _doctor(config, hf_env(tmp_path / "empty", hub.url))
    model_lines = [line for line in out.splitlines() if line.startswith("[FAIL] model")]
    assert len(model_lines) == 1 and "offline" in model_lines[0] and REPO_ID in model_lines[0]


async def test_cancel_while_resolving_stops_before_any_byte(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeHub(REPO_ID, tiny_model, api_delay_s=30) as hub:
        async with daemon(hf_config(tmp_path), env=hf_env(tmp_path, hub.url)) as s:
            revision = ("GET", f"/api/models/{REPO_ID}/revision/main")
            await wait_for(lambda: revision in hub.requests and s.progress)
            token, values = load_progress(s)
            assert "resolving" in values[0]["message"]
            s.client.protocol.notify(
                T.WINDOW_WORK_DONE_PROGRESS_CANCEL, T.WorkDoneProgressCancelParams(token=token)
            )
            status = await s.wait_status("error", timeout=10)  # not after the hub's 30 s
            assert "cancelled" in status["message"]
            assert hub.bytes_sent == 0

            hub.api_delay_s = 0
            r = await s.request("mlxd/chat", chat_params("hello", maxTokens=8))
            assert r.backend == "local" and r.usage.completionTokens > 0
