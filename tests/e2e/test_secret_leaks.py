"""Issue #15 proof, through the real daemon: random secrets (a literal API key, a key header,
a URL password) in a 0600 config file; a hostile provider echoes everything it gets in every
failure shape, to an OpenAI and an Anthropic backend, at DEBUG log level. No 8-character piece
of any secret appears in any frame the client got, any stderr line, or `mlxd doctor`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygls.exceptions import JsonRpcException

from tests.conftest import REPO, chat_params, daemon
from tests.e2e.hostile import MODES, Hostile
from tests.e2e.test_faults import stderr_tee
from tests.kit import daemon_env

pytestmark = pytest.mark.slow
secret = st.text(alphabet="0123456789abcdef", min_size=12, max_size=40)


def pieces(value: str) -> list[str]:
    return [value[i : i + 8] for i in range(len(value) - 7)]


def write_config(path: Path, model: Path, port: int, key: str, header: str, pw: str) -> Path:
    root = f"http://ana:{pw}@127.0.0.1:{port}"
    path.write_text(
        f"""
[local]
model = "{model}"
preload = false
[backends.o]
protocol = "openai"
base_url = "{root}/v1"
model = "m"
api_key = "{key}"
headers = {{ "api-key" = "{header}" }}
[backends.a]
protocol = "anthropic"
base_url = "{root}"
model = "m"
api_key = "{key}"
headers = {{ "X-Auth-Token" = "{header}" }}
[routing]
cloud = true
chat = ["o", "a", "local"]
max_retries = 1
"""
    )
    path.chmod(0o600)
    return path


async def everything(cfg: Path, server: Hostile) -> str:
    seen: list[object] = []
    stderr: list[bytes] = []
    forward = pytest_lsp.client.forward_stderr
    pytest_lsp.client.forward_stderr = stderr_tee(stderr)
    try:
        async with daemon(cfg, env={"MLXD_LOG_LEVEL": "DEBUG"}) as s:
            for mode in MODES:
                server.mode = mode
                for backend in ("o", "a"):
                    try:
                        seen.append(
                            await s.request("mlxd/chat", chat_params("hi", backend=backend))
                        )
                    except JsonRpcException as exc:
                        seen.append([exc.code, exc.message, exc.data])
            sent = [seen, s.statuses, s.progress, s.logs, [m.message for m in s.messages]]
    finally:
        pytest_lsp.client.forward_stderr = forward
    frames = json.dumps(sent, default=lambda o: getattr(o, "__dict__", repr(o)))
    doctor = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mlxd", "doctor", "--config", str(cfg)],
        env={**daemon_env(), "PYTHONPATH": str(REPO / "daemon")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "\n".join(
        [frames, b"".join(stderr).decode(errors="replace"), doctor.stdout, doctor.stderr]
    )


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=secret, header=secret, password=secret, pad=st.integers(0, 400))
def test_no_piece_of_any_secret_reaches_a_frame_stderr_or_doctor(
    tmp_path_factory, tiny_model, key, header, password, pad
):
    async def scenario() -> tuple[str, int]:
        async with Hostile(pad=pad) as server:
            path = tmp_path_factory.mktemp("leaks") / "mlxd.toml"
            cfg = write_config(path, tiny_model, server.port, key, header, password)
            return await everything(cfg, server), server.requests

    text, requests = asyncio.run(scenario())
    assert requests >= 2 * len(MODES)  # every failure shape was served, on both protocols
    assert "backend o" in text and "backend a" in text  # doctor ran and listed both
    leaked = [p for s in (key, header, password) for p in pieces(s) if p in text]
    assert leaked == [], leaked
