"""Shared fixtures: a tiny real model, config files, and the real daemon over real stdio (what
bench/ shares too is in kit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.kit import RUNTIME_ENV, daemon_env, private_runtime, serve_cmd, write_config

REPO = Path(__file__).resolve().parent.parent

# Issue #19 item 7: `mlxd serve` forwards to the user's shared daemon by default. Whatever a test
# starts with this process's environment gets a runtime directory of this run's (this xdist
# worker's) own instead, so no test ever reaches the user's daemon; at the end the daemon left
# there, if any, is stopped and fails the run (tests stop what they start).
_RUN_RUNTIME = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUNTIME_ENV] = str(
        _RUN_RUNTIME.enter_context(private_runtime("mlxd-rt-run-", strict=True))
    )


@pytest.fixture(autouse=True)
def _no_taint_from_other_tests() -> Iterator[None]:
    """The daemons a test starts in-process share this run's runtime directory, and rule 1's
    memory (taint_file.py) lives there: a conversation one test taints must not make another
    test's chat local. A test that wants it across daemons keeps it for its own length."""
    taint = Path(os.environ[RUNTIME_ENV]) / "taint"
    taint.unlink(missing_ok=True)
    yield
    taint.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        _RUN_RUNTIME.close()
    except RuntimeError as exc:
        print(f"\nFAILED: a test left a shared daemon running: {exc}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random llama with a real tokenizer, written as an mlx-lm directory."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def one_line_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """slow_tiny_model's size, never picking a token that holds a line break: a line is only
    ended by a cap (max_tokens, inline.max_ms)."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(
        tmp_path_factory.mktemp("tiny-one-line") / "model",
        layers=8,
        hidden=512,
        intermediate=1024,
        one_line=True,
    )


# What script_model writes after a prompt that ends with "):" (the end of a block's header).
BLOCK = "\n    if a:\n        return b"


@pytest.fixture(scope="session")
def script_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that, greedy, writes BLOCK after a prompt ending in "):" and ends there
    (make_tiny_model's `script`): a block of two lines, the same whatever the timing."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-script") / "model", script="):" + BLOCK)


@pytest.fixture(scope="session")
def slow_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wider and deeper, so a long generation lasts long enough to cancel mid-way."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(
        tmp_path_factory.mktemp("tiny-slow") / "model", layers=8, hidden=512, intermediate=1024
    )


def cloud_first_config(
    path: Path, tiny_model: Path, url: str, key_env: str, kinds: tuple[str, ...], extra: str = ""
) -> Path:
    """One OpenAI-compatible backend `cloud` at `url` (key from `key_env`), tried before the
    tiny local model for each request kind in `kinds`, the cloud switch on; `extra` is more TOML."""
    chains = "".join(f'{kind} = ["cloud", "local"]\n' for kind in kinds)
    return write_config(
        path,
        f"""
[local]
model = "{tiny_model}"
[backends.cloud]
protocol = "openai"
base_url = "{url}"
api_key_env = "{key_env}"
model = "gpt-test"
[routing]
cloud = true
{chains}{extra}""",
    )


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_model: Path) -> Path:
    return write_config(
        tmp_path / "mlxd.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n'
        # The random tiny model never ends a line: show what a cap cut, or there is no item.
        "[inline]\nwhole_lines = false\n",
    )


class Session:
    """A pytest-lsp client plus what the daemon sent besides responses."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.progress: dict[Any, list[Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.init_result: T.InitializeResult | None = None

    @property
    def messages(self) -> list[T.ShowMessageParams]:
        return self.client.messages

    @property
    def logs(self) -> list[str]:
        return [m.message for m in self.client.log_messages]

    def deltas(self, token: Any) -> list[str]:
        return [
            v["delta"] for v in self.progress.get(token, []) if isinstance(v, dict) and "delta" in v
        ]

    async def request(self, method: str, params: Any) -> Any:
        return await self.client.protocol.send_request_async(method, params)

    def start(self, method: str, params: Any) -> tuple[str, asyncio.Future[Any]]:
        """Send a request now; return its id (to cancel it) and the future of its response."""
        self._ids = getattr(self, "_ids", 0) + 1
        msg_id = f"req-{self._ids}"
        fut = self.client.protocol.send_request(method, params, msg_id=msg_id)
        return msg_id, asyncio.wrap_future(fut)

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(T.CANCEL_REQUEST, T.CancelParams(id=msg_id))

    async def wait_status(self, *states: str, timeout: float = 60) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while True:
                for s in self.statuses:
                    if s["state"] in states:
                        return s
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def daemon(
    config: Path | None = None,
    *,
    init_options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    capabilities: T.ClientCapabilities | None = None,
    process_id: int | None = None,
) -> AsyncIterator[Session]:
    """Start `python -m mlxd serve` as a subprocess, initialize it, and shut it down after."""
    client = await ClientServerConfig(
        server_command=serve_cmd(config), server_env=daemon_env(env)
    ).start()
    session = Session(client)

    def on_progress(params: T.ProgressParams) -> None:
        # pytest-lsp's own handler raises on partial-result values; record everything.
        session.progress.setdefault(params.token, []).append(_plain(params.value))

    def on_status(params: Any) -> None:
        session.statuses.append(_plain(params))

    client.protocol.fm.features[T.PROGRESS] = on_progress
    client.protocol.fm.features["mlxd/status"] = on_status

    caps = capabilities or T.ClientCapabilities(
        window=T.WindowClientCapabilities(work_done_progress=True)
    )
    session.init_result = await client.initialize_session(
        T.InitializeParams(
            capabilities=caps,
            process_id=process_id,
            initialization_options=init_options,
        )
    )
    try:
        yield session
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        finally:
            await client.stop()


def _plain(obj: Any) -> Any:
    """pygls hands unknown notifications' params over as objects; tests want dicts."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return [_plain(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items()}
    return obj


def chat_params(text: str, token: Any = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"messages": [{"role": "user", "content": text}], **extra}
    if token is not None:
        params["partialResultToken"] = token
    return params
