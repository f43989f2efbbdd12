"""Daemons shared by the tests of one module (a daemon start costs seconds, most tests here
milliseconds): a module that uses these fixtures runs its tests in the module's event loop
(`pytestmark = pytest.mark.asyncio(loop_scope="module")`). A test that needs a fresh process
(an exit, a crash, a config reload, process-wide counts from zero) starts its own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ..conftest import Session, daemon, write_config
from ..fakes.providers import FakeProvider
from .test_router import ENV, KEY, make_config


def fresh_session(s: Session) -> Session:
    """A shared daemon's session with what earlier tests received forgotten."""
    s.progress.clear()
    s.client.messages.clear()
    return s


@pytest.fixture
def uri(request: pytest.FixtureRequest) -> str:
    """A document URI of this test's own, so that documents on a shared daemon never meet."""
    return "file:///work/project/" + re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name) + ".py"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local_daemon(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> AsyncIterator[Session]:
    """tiny_config's daemon, with no prompt cache: every request is computed from scratch, as
    on the fresh daemon each test had before."""
    cfg = write_config(
        tmp_path_factory.mktemp("local") / "mlxd.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\nprompt_cache_mb = 0\n'
        "[inline]\nwhole_lines = false\n",
    )
    async with daemon(cfg) as s:
        yield s


@pytest.fixture
def local(local_daemon: Session) -> Session:
    return fresh_session(local_daemon)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tiny_daemon(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> AsyncIterator[Session]:
    """tiny_config's daemon exactly (its prompt cache included)."""
    cfg = write_config(
        tmp_path_factory.mktemp("tiny") / "mlxd.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n[inline]\nwhole_lines = false\n',
    )
    async with daemon(cfg) as s:
        yield s


@pytest.fixture
def tiny(tiny_daemon: Session) -> Session:
    return fresh_session(tiny_daemon)


def cloud_only(tmp_path: Path, model: Path, fake: FakeProvider, protocol: str) -> Path:
    """Every request kind served by one cloud backend (nothing to fall back to); the local model
    is not preloaded (no request needs it: it stays unloaded, its imports undone)."""
    url = fake.openai_url if protocol == "openai" else fake.anthropic_url
    chain = ["cloud"]
    return make_config(
        tmp_path / "cloud.toml",
        model,
        {"cloud": (protocol, url)},
        {"chat": chain, "complete": chain, "inline": chain},
        preload=False,
    )


class _Clouds:
    """One cloud_only daemon and its fake provider per protocol, started on first use."""

    def __init__(self, stack: AsyncExitStack, tmp: pytest.TempPathFactory, model: Path) -> None:
        self.stack, self.tmp, self.model = stack, tmp, model
        self.rigs: dict[str, tuple[Session, FakeProvider]] = {}

    async def get(self, protocol: str) -> tuple[Session, FakeProvider]:
        if protocol not in self.rigs:
            fake = await self.stack.enter_async_context(FakeProvider(require_key=KEY))
            cfg = cloud_only(self.tmp.mktemp(f"cloud-{protocol}"), self.model, fake, protocol)
            # No snippets of the documents other tests left open (one test each had before).
            cfg.write_text(cfg.read_text() + "\n[inline]\nneighbor_snippets = false\n")
            s = await self.stack.enter_async_context(daemon(cfg, env=ENV))
            self.rigs[protocol] = (s, fake)
        return self.rigs[protocol]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clouds(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Any:
    async with AsyncExitStack() as stack:
        yield _Clouds(stack, tmp_path_factory, tiny_model)


Cloud = Callable[[str], Awaitable[tuple[Session, FakeProvider]]]


@pytest_asyncio.fixture(loop_scope="module")
async def cloud(clouds: _Clouds) -> AsyncIterator[Cloud]:
    """`await cloud(protocol)`: the shared daemon for `protocol` and its fake provider, both as
    if new (no reply queued, the default reply, no request or disconnect counted); after the
    test, its fake has finished answering (a disconnect it caused is never the next test's)."""
    used: list[FakeProvider] = []

    async def get(protocol: str) -> tuple[Session, FakeProvider]:
        s, fake = await clouds.get(protocol)
        await fake.quiet()
        fake.reset()
        used.append(fake)
        return fresh_session(s), fake

    yield get
    for fake in used:
        await fake.quiet()
