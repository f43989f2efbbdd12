"""One maxTokens default for every backend (issue #13): a chat that gives no maxTokens gets
`routing.max_tokens` from the router, so a fallback from Anthropic to an OpenAI-compatible
server to the local model never changes the answer's budget. Before, the same request asked
Anthropic for 1024 tokens, the OpenAI server for its own default (nothing sent) and the local
model for 512."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import chat_params, daemon
from tests.e2e.test_router import ENV, KEY, make_config, ready
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as f:
        yield f


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(require_key=KEY) as f:
        yield f


async def test_every_backend_of_a_chain_gets_the_same_default_budget(
    tmp_path: Path, tiny_model: Path, openai_fake: FakeProvider, anthropic_fake: FakeProvider
) -> None:
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {
            "claude": ("anthropic", anthropic_fake.anthropic_url),
            "cloud": ("openai", openai_fake.openai_url),
        },
        {"chat": ["claude", "cloud", "local"]},
    )
    # The key that set the local default before, now the alias of routing.max_tokens (a config
    # both versions accept, so the test shows the change of behaviour, not of schema).
    cfg.write_text(cfg.read_text().replace("[local]\n", "[local]\nmax_tokens = 7\n", 1))
    anthropic_fake.default = Reply.status(500, "down")  # not retried: the chain moves on
    openai_fake.default = Reply.status(500, "down")
    async with daemon(cfg, env=ENV) as s:
        await ready(s)
        r = await s.request("mlxd/chat", chat_params("hi"))  # no maxTokens
    assert [a.backend for a in r.attempts] == ["claude", "cloud"]
    assert anthropic_fake.requests[0].body["max_tokens"] == 7
    assert openai_fake.requests[0].body["max_tokens"] == 7
    # the tiny model never ends an answer by itself: its length is the budget it was given
    assert (r.backend, r.finishReason, r.usage.completionTokens) == ("local", "length", 7)
