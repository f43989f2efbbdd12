"""Issue #19: a shared daemon's session reads the environment of its own editor window, not the
daemon's (which is that of whichever window happened to start it): Hugging Face offline mode,
MLXD_EMBEDDED_GGUF and `~` in model paths. Each test starts the daemon from window A with one
setting, then checks what window B, set otherwise, gets. Real forwarders over real stdio, one
daemon per test in a runtime directory of its own, a loopback fake Hub."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import chat_params, daemon, write_config
from tests.fakes.hf_hub import FakeHub
from tests.kit import daemon_pids, private_runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO_ID = "mlx-community/tiny-mlxd-test-4bit"


@pytest.fixture
def rt() -> Iterator[Path]:
    with private_runtime() as path:
        yield path


def window(rt: Path, **env: str) -> dict[str, str]:
    return {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(rt), **env}


def hf_env(tmp_path: Path, endpoint: str, offline: str) -> dict[str, str]:
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": offline,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


async def test_a_daemon_started_offline_still_downloads_for_an_online_window(
    rt: Path, tmp_path: Path, tiny_config: Path, tiny_model: Path
) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once per process: the offline window that started
    the daemon made every later window offline (B's load failed "offline mode is enabled")."""
    online = write_config(tmp_path / "b.toml", f'[local]\nmodel = "{REPO_ID}"\npreload = true\n')
    async with FakeHub(REPO_ID, tiny_model) as hub:
        offline = hf_env(tmp_path / "a", hub.url, "1")
        async with daemon(tiny_config, env=window(rt, **offline)) as a:
            await a.wait_status("ready", "error", timeout=120)
            assert len(daemon_pids(rt)) == 1  # A started it: the daemon has A's environment
            async with daemon(online, env=window(rt, **hf_env(tmp_path, hub.url, "0"))) as b:
                status = await b.wait_status("ready", "error", timeout=120)
                assert status["state"] == "ready", status
                assert hub.bytes_sent == hub.total_bytes
                r = await b.request("mlxd/chat", chat_params("hello", maxTokens=3))
                assert r.backend == "local" and r.usage.completionTokens > 0


async def test_the_embedded_models_override_is_the_windows(
    rt: Path, tmp_path: Path, tiny_config: Path
) -> None:
    """MLXD_EMBEDDED_GGUF came from the daemon's environment: B's error named A's file."""
    a_file, b_file = tmp_path / "a-mirror.gguf", tmp_path / "b-mirror.gguf"
    embedded = write_config(tmp_path / "b.toml", '[local]\nmodel = "smollm2-135m"\n')
    async with daemon(tiny_config, env=window(rt, MLXD_EMBEDDED_GGUF=str(a_file))) as a:
        await a.wait_status("ready", "error", timeout=120)
        async with daemon(embedded, env=window(rt, MLXD_EMBEDDED_GGUF=str(b_file))) as b:
            with pytest.raises(Exception) as err:
                await b.request("mlxd/chat", chat_params("hello", maxTokens=2))
            assert str(b_file) in str(err.value) and str(a_file) not in str(err.value)


async def test_a_tilde_in_a_model_path_is_the_windows_home(
    rt: Path, tmp_path: Path, tiny_config: Path, tiny_model: Path
) -> None:
    """`~` was expanded with the daemon's HOME (A's): B's model was not found."""
    a_home, b_home = tmp_path / "home-a", tmp_path / "home-b"
    a_home.mkdir()
    (b_home / "models").mkdir(parents=True)
    (b_home / "models" / "tiny").symlink_to(tiny_model)
    tilde = write_config(tmp_path / "b.toml", '[local]\nmodel = "~/models/tiny"\npreload = true\n')
    async with daemon(tiny_config, env=window(rt, HOME=str(a_home))) as a:
        await a.wait_status("ready", "error", timeout=120)
        async with daemon(tilde, env=window(rt, HOME=str(b_home))) as b:
            status = await b.wait_status("ready", "error", timeout=120)
            assert status["state"] == "ready", status
            r = await b.request("mlxd/chat", chat_params("hello", maxTokens=3))
            assert r.backend == "local"


async def _inline(s, uri: str) -> None:
    s.client.text_document_did_open(
        T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "python", 1, "def add(a, b):\n    "))
    )
    params = T.InlineCompletionParams(
        text_document=T.TextDocumentIdentifier(uri),
        position=T.Position(1, 4),
        context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
    )
    await s.client.text_document_inline_completion_async(params)


async def test_each_window_gets_the_log_at_its_own_level(rt: Path, tiny_config: Path) -> None:
    """MLXD_LOG_LEVEL was the daemon's (the first window's): a window started at DEBUG to see
    why an inline answer was empty got nothing below the first window's WARNING."""
    async with daemon(tiny_config, env=window(rt, MLXD_LOG_LEVEL="WARNING")) as a:
        await a.wait_status("ready", "error", timeout=120)
        async with daemon(tiny_config, env=window(rt, MLXD_LOG_LEVEL="DEBUG")) as b:
            await b.wait_status("ready", timeout=60)
            await _inline(a, "file:///w/a.py")
            await _inline(b, "file:///w/b.py")
            await b.request("mlxd/models", {})  # B's records sent before it are in
            await a.request("mlxd/models", {})
            assert any(line.startswith("inline ") for line in b.logs), b.logs  # DEBUG: why.py
            quiet = [m for m in a.client.log_messages if m.type > T.MessageType.Warning]
            assert quiet == [], [m.message for m in quiet]


async def test_the_model_load_record_reaches_the_window_that_loaded_it(
    rt: Path, tiny_config: Path
) -> None:
    """It was logged on the MLX thread, outside any session: it went to the daemon's log file,
    and VS Code's output channel never showed the load (issue #19 item 9, the VS Code e2e)."""
    async with daemon(tiny_config, env=window(rt)) as a:
        await a.wait_status("ready", timeout=120)
        await a.request("mlxd/models", {})  # the records sent before it are in
        loaded = [line for line in a.logs if line.startswith("loaded ")]
        assert len(loaded) == 1, a.logs
    assert "loaded " not in (rt / "daemon.log").read_text()


async def test_a_cancelled_load_goes_on_for_another_window_that_uses_the_model(
    rt: Path, tmp_path: Path, tiny_model: Path
) -> None:
    """One window's cancel stopped every load in the daemon: the other window waiting for the
    same model lost its download too (in-process, each window's load was its own)."""
    config = write_config(tmp_path / "hf.toml", f'[local]\nmodel = "{REPO_ID}"\npreload = true\n')
    async with FakeHub(REPO_ID, tiny_model, delay_s=0.1) as hub:  # ~944 kB in ~6 s
        env = window(rt, **hf_env(tmp_path, hub.url, "0"))
        async with daemon(config, env=env) as a, daemon(config, env=env) as b:

            def load_token() -> str | None:
                return next((t for t in a.progress if str(t).startswith("mlxd/load/")), None)

            while not (hub.bytes_sent > 200_000 and load_token()):
                await asyncio.sleep(0.02)
            assert hub.bytes_sent < hub.total_bytes  # cancelled mid-way
            a.client.protocol.notify(
                T.WINDOW_WORK_DONE_PROGRESS_CANCEL, T.WorkDoneProgressCancelParams(load_token())
            )
            status = await b.wait_status("ready", "error", timeout=60)
            assert status["state"] == "ready", status
            assert hub.aborted_files == [] and hub.bytes_sent == hub.total_bytes
            r = await b.request("mlxd/chat", chat_params("hello", maxTokens=3))
            assert r.backend == "local"


@pytest.mark.parametrize("how", ["--config", "MLXD_CONFIG"])
async def test_a_tilde_in_the_config_path_is_the_windows_home(
    rt: Path, tmp_path: Path, tiny_config: Path, tiny_model: Path, how: str
) -> None:
    """`--config ~/x.toml` (a Neovim `cmd`, no shell to expand it) became <cwd>/~/x.toml in the
    forwarder, and MLXD_CONFIG=~/x.toml was joined to the window's directory in the daemon."""
    a_home, b_home = tmp_path / "home-a", tmp_path / "home-b"
    a_home.mkdir()
    b_home.mkdir()
    write_config(b_home / "b.toml", f'[local]\nmodel = "{tiny_model}"\npreload = true\n')
    by_flag = how == "--config"
    env = {"HOME": str(b_home)} | ({} if by_flag else {"MLXD_CONFIG": "~/b.toml"})
    async with daemon(tiny_config, env=window(rt, HOME=str(a_home))) as a:
        await a.wait_status("ready", "error", timeout=120)
        async with daemon(Path("~/b.toml") if by_flag else None, env=window(rt, **env)) as b:
            status = await b.wait_status("ready", "error", timeout=60)
            assert status["state"] == "ready", status
            assert not [m.message for m in b.messages if "config" in m.message], b.messages
