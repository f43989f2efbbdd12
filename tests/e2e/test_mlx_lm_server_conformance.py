"""OpenAIBackend against an OpenAI-compatible server nobody here wrote: `mlx_lm.server`, started
on loopback with the tiny test model. Keyless, as with any local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlxd.backends.openai import OpenAIBackend
from mlxd.config import BackendConfig, TimeoutsConfig
from mlxd.secrets import KeyStore
from mlxd.types import Delta, Done, Message, Request
from tests.kit import MlxLmServer


@pytest.fixture
async def mlx_lm_server(tiny_model: Path) -> AsyncIterator[MlxLmServer]:
    async with MlxLmServer(tiny_model, start_s=60) as server:
        yield server


async def test_chat_streams_through_openai_backend_keyless(mlx_lm_server):
    base_url = mlx_lm_server.url + "/v1"
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
    assert "".join(deltas), f"no text streamed; server log:\n{mlx_lm_server.log_text()}"
    (done,) = dones
    assert done.finish_reason in ("stop", "length")
    # mlx_lm.server honours stream_options.include_usage: the counts come from the server.
    assert done.prompt_tokens > 0 and 0 < done.completion_tokens <= 12
