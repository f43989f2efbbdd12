"""OpenAIBackend against an OpenAI-compatible server nobody here wrote: `mlx_lm.server`, started
on loopback with the tiny test model. Keyless, as with any local server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.secrets import KeyStore
from mlxd.types import Delta, Done, Message, Request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"mlx_lm.server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"mlx_lm.server not healthy after 60 s:\n{log.read_text()}")


@pytest.fixture
async def mlx_lm_server(tiny_model: Path, tmp_path: Path):
    port = _free_port()
    log = tmp_path / "mlx_lm_server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlx_lm.server",
                "--model",
                str(tiny_model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_healthy(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_chat_streams_through_openai_backend_keyless(mlx_lm_server):
    base_url, log = mlx_lm_server
    # "default_model" is mlx_lm.server's name for the model given on its command line.
    cfg = BackendConfig(protocol="openai", base_url=base_url, model="default_model")
    backend = OpenAIBackend("mlx-lm", cfg, TimeoutsConfig(connect_s=2, idle_s=60), KeyStore())
    request = Request(
        kind="chat",
        messages=[Message("system", "You are helpful."), Message("user", "Say something.")],
        max_tokens=12,
        temperature=0.0,
    )
    deltas: list[str] = []
    dones: list[Done] = []
    try:
        async for ev in backend.stream(request):
            if isinstance(ev, Delta):
                assert not dones, "a Delta after Done"
                deltas.append(ev.text)
            else:
                dones.append(ev)
    finally:
        await backend.close()
    assert "".join(deltas), f"no text streamed; server log:\n{log.read_text()}"
    (done,) = dones
    assert done.finish_reason in ("stop", "length")
    # mlx_lm.server honours stream_options.include_usage: the counts come from the server.
    assert done.prompt_tokens > 0 and 0 < done.completion_tokens <= 12
