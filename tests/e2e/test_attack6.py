"""The session-6 audit of #15 (trust), as an attacker: a hostile server echoes the key where
nothing redacts it yet; odd input through the taint memory. Real daemon over real stdio, raw
SSE bodies from a loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import daemon
from .test_attack_real_input import RawStream, an, an_text, oa
from .test_real_input import ask, cloud_only
from .test_router import ENV, KEY

ECHOED_MODEL = [
    ("openai", oa({"content": "ok"}, "stop", model=KEY) + b"data: [DONE]\n\n"),
    (
        "anthropic",
        an("message_start", message={"model": KEY, "usage": {"input_tokens": 3}})
        + an_text("ok")
        + an("message_delta", delta={"stop_reason": "end_turn"})
        + an("message_stop"),
    ),
]


@pytest.mark.parametrize(("protocol", "body"), ECHOED_MODEL, ids=["openai", "anthropic"])
async def test_a_key_echoed_as_the_model_name_is_redacted(
    tmp_path: Path, tiny_model: Path, protocol, body
):
    async with RawStream() as raw:
        raw.bodies = [body]
        url = raw.root + "/v1" if protocol == "openai" else raw.root
        fake = type("F", (), {"openai_url": url, "anthropic_url": url})()
        async with daemon(cloud_only(tmp_path, tiny_model, fake, protocol), env=ENV) as s:
            r = await ask(s, "mlxd/chat", "t1")
            assert r.text == "ok"
            assert KEY[:12] not in str(r.model), r.model


@pytest.mark.parametrize("model", [{"name": "x"}, 7, ["m"], "m" * 100_000])
async def test_a_model_name_of_another_shape_is_not_passed_on(
    tmp_path: Path, tiny_model: Path, model
):
    async with RawStream() as raw:
        raw.bodies = [oa({"content": "ok"}, "stop", model=model) + b"data: [DONE]\n\n"]
        fake = type("F", (), {"openai_url": raw.root + "/v1"})()
        async with daemon(cloud_only(tmp_path, tiny_model, fake, "openai"), env=ENV) as s:
            r = await ask(s, "mlxd/chat", "t1")
            assert r.text == "ok"
            assert isinstance(r.model, str) and len(r.model) < 300, str(r.model)[:100]
