"""The core slice over real stdio: lifecycle, errors, chat/complete streaming, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import Session, chat_params, daemon, write_config

from .conftest import fresh_session

# The module's loop: its daemons (tiny: tests/e2e/conftest.py; slow) are shared by the tests that
# neither change their config nor depend on a fresh process (a start, a load, a bad config).
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_initialize_advertises_capabilities(tiny: Session) -> None:
    s = tiny
    assert s.init_result is not None
    caps = s.init_result.capabilities
    sync = caps.text_document_sync
    assert sync.change == T.TextDocumentSyncKind.Incremental
    assert caps.inline_completion_provider is not None
    mlxd = caps.experimental["mlxd"]
    assert mlxd["version"] == "1"
    assert set(mlxd["methods"]) >= {"mlxd/chat", "mlxd/complete", "mlxd/models"}


async def test_model_load_reports_progress_and_status(tiny_config: Path) -> None:
    async with daemon(tiny_config) as s:
        await s.wait_status("ready")
        states = [st["state"] for st in s.statuses]
        assert states.index("loading") < states.index("ready")
        # server-initiated work-done progress: begin ... end
        kinds = [v.get("kind") for vals in s.progress.values() for v in vals if isinstance(v, dict)]
        assert kinds[0] == "begin" and kinds[-1] == "end"


async def test_chat_streams_deltas_that_concatenate_to_the_result(tiny: Session) -> None:
    s = tiny
    r = await s.request("mlxd/chat", chat_params("hello there", token="t1", maxTokens=24))
    deltas = s.deltas("t1")
    assert len(deltas) >= 3
    assert "".join(deltas) == r.text
    assert all(v["backend"] == "local" for v in s.progress["t1"])
    assert r.backend == "local"
    assert r.finishReason in ("stop", "length")
    assert r.usage.completionTokens > 0 and r.usage.promptTokens > 0
    assert r.attempts == []
    assert r.timings.totalMs >= r.timings.firstTokenMs > 0


async def test_greedy_is_deterministic_and_temperature_zero_is_kept(tiny: Session) -> None:
    s = tiny
    a = await s.request("mlxd/chat", chat_params("same prompt", maxTokens=20, temperature=0))
    b = await s.request("mlxd/chat", chat_params("same prompt", maxTokens=20, temperature=0))
    assert a.text == b.text and a.text
    # the second run reuses the KV cache of the first and must not change the answer
    c = await s.request("mlxd/chat", chat_params("same prompt", maxTokens=20))
    assert c.text == a.text


async def test_max_tokens_gives_finish_reason_length(tiny: Session) -> None:
    s = tiny
    full = await s.request("mlxd/chat", chat_params("count", maxTokens=40))
    assert full.usage.completionTokens > 3  # precondition: the answer is longer than 3
    r = await s.request("mlxd/chat", chat_params("count", maxTokens=3))
    assert r.usage.completionTokens == 3
    assert r.finishReason == "length"
    assert full.text.startswith(r.text)


async def test_stop_sequence_is_honoured_and_not_included(tiny: Session) -> None:
    s = tiny
    full = (await s.request("mlxd/chat", chat_params("stop test", maxTokens=40))).text
    assert len(full) > 12
    stop = full[8:12]  # a piece from the middle of the greedy answer
    cut = full.index(stop)
    r = await s.request("mlxd/chat", chat_params("stop test", token="s", maxTokens=40, stop=[stop]))
    assert r.text == full[:cut]
    assert stop not in "".join(s.deltas("s"))
    assert r.finishReason == "stop"


async def test_complete_streams_a_continuation(tiny: Session) -> None:
    s = tiny
    r = await s.request(
        "mlxd/complete",
        {
            "prefix": "def add(a, b):\n    ",
            "language": "python",
            "maxTokens": 12,
            "partialResultToken": "c",
        },
    )
    assert r.text and "".join(s.deltas("c")) == r.text
    assert r.backend == "local"


async def test_request_during_model_load_waits_without_a_second_load(tiny_config: Path) -> None:
    async with daemon(tiny_config) as s:
        # sent right after initialize, while the background load runs
        results = await asyncio.gather(
            s.request("mlxd/chat", chat_params("a", maxTokens=3)),
            s.request("mlxd/chat", chat_params("b", maxTokens=3)),
        )
        assert all(r.backend == "local" for r in results)
        assert [st["state"] for st in s.statuses].count("loading") == 1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow_daemon(
    tmp_path_factory: pytest.TempPathFactory, slow_tiny_model: Path
) -> AsyncIterator[Session]:
    cfg = write_config(
        tmp_path_factory.mktemp("slow") / "c.toml", f'[local]\nmodel = "{slow_tiny_model}"\n'
    )
    async with daemon(cfg) as s:
        yield s


@pytest.fixture
def slow(slow_daemon: Session) -> Session:
    return fresh_session(slow_daemon)


async def test_cancel_answers_minus_32800_fast_and_next_request_is_served(slow: Session) -> None:
    s = slow
    await s.wait_status("ready")
    msg_id, fut = s.start("mlxd/chat", chat_params("go on", token="long", maxTokens=4000))
    while len(s.deltas("long")) < 3:
        await asyncio.sleep(0.005)
    n_before = len(s.deltas("long"))
    s.cancel(msg_id)
    with pytest.raises(JsonRpcException) as err:
        await fut
    assert err.value.code == -32800
    # "fast" counted in decode steps, not seconds: at most two more deltas came
    assert len(s.deltas("long")) - n_before <= 2
    await asyncio.sleep(0.2)
    assert len(s.deltas("long")) - n_before <= 2  # and none trickle in later
    r = await s.request("mlxd/chat", chat_params("next", maxTokens=3))
    assert r.backend == "local" and r.usage.completionTokens >= 1


async def test_cancelling_one_of_two_batched_requests_leaves_the_other_running(
    slow: Session,
) -> None:
    s = slow
    await s.wait_status("ready")
    a_id, a = s.start("mlxd/chat", chat_params("one", token="a", maxTokens=4000))
    _, b = s.start("mlxd/chat", chat_params("two", token="b", maxTokens=40))
    while not (s.deltas("a") and s.deltas("b")):  # both decode in one batch
        await asyncio.sleep(0.005)
    s.cancel(a_id)
    with pytest.raises(JsonRpcException) as err:
        await a
    assert err.value.code == -32800
    n_a = len(s.deltas("a"))
    r = await b  # the other request finishes normally
    assert r.text == "".join(s.deltas("b"))
    assert len(s.deltas("a")) - n_a <= 2


async def test_models_lists_local_and_defaults(tiny: Session, tiny_model: Path) -> None:
    s = tiny
    await s.wait_status("ready")
    r = await s.request("mlxd/models", {})
    assert r.models[0].name == str(tiny_model)
    assert r.models[0].backend == "local" and r.models[0].loaded is True
    assert r.defaults.chat == "local"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}], "maxTokens": "many"}, "maxTokens"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}, "max_tokens"),
        ({}, "messages"),
    ],
)
async def test_bad_params_name_the_field(tiny: Session, params: dict, field: str) -> None:
    s = tiny
    with pytest.raises(JsonRpcException) as err:
        await s.request("mlxd/chat", params)
    assert err.value.code == -32602
    assert field in err.value.message
    ok = await s.request("mlxd/chat", chat_params("still alive", maxTokens=2))
    assert ok.backend == "local"


async def test_unknown_method_and_unknown_backend(tiny: Session) -> None:
    s = tiny
    with pytest.raises(JsonRpcException) as err:
        await s.request("mlxd/nope", {})
    assert err.value.code == -32601
    with pytest.raises(JsonRpcException) as err:
        await s.request("mlxd/chat", chat_params("x", backend="nowhere"))
    assert err.value.code == -32602 and "nowhere" in err.value.message


async def test_invalid_config_file_is_reported_and_defaults_serve(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = write_config(tmp_path / "bad.toml", '[local]\nmax_tokens = "lots"\n')
    async with daemon(cfg, init_options={"local": {"model": str(tiny_model)}}) as s:
        # initializationOptions are valid, the file is not: the file's error names the key
        await asyncio.sleep(0.2)
        text = " ".join(m.message for m in s.messages)
        assert "local.max_tokens" in text


async def test_invalid_init_options_keep_last_good_config(
    tiny_config: Path, tiny_model: Path
) -> None:
    async with daemon(tiny_config, init_options={"routing": {"chat": ["ghost"]}}) as s:
        await s.wait_status("ready")
        assert any("routing.chat" in m.message and "ghost" in m.message for m in s.messages)
        r = await s.request("mlxd/chat", chat_params("works", maxTokens=2))
        assert r.backend == "local"


async def test_did_change_configuration_reloads_and_rejects_bad(tiny_config: Path) -> None:
    async with daemon(tiny_config) as s:
        await s.wait_status("ready")
        s.client.workspace_did_change_configuration(
            T.DidChangeConfigurationParams(settings={"local": {"max_tokens": 3}})
        )
        r = await s.request("mlxd/chat", chat_params("short now"))
        assert r.usage.completionTokens <= 3
        s.client.workspace_did_change_configuration(
            T.DidChangeConfigurationParams(settings={"timeouts": {"connect_s": -1}})
        )
        await asyncio.sleep(0.3)
        assert any("timeouts.connect_s" in m.message for m in s.messages)
        r = await s.request("mlxd/chat", chat_params("still short"))
        assert r.usage.completionTokens <= 3


async def test_missing_model_is_a_clear_error_and_daemon_keeps_serving(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "m.toml", '[local]\nmodel = "/nonexistent/model"\n')
    async with daemon(cfg) as s:
        with pytest.raises(JsonRpcException) as err:
            await s.request("mlxd/chat", chat_params("hi"))
        assert err.value.code == -32803
        assert "/nonexistent/model" in err.value.message
        assert err.value.data["attempts"][0]["backend"] == "local"
        status = await s.wait_status("error")
        assert "/nonexistent/model" in status["message"]
        r = await s.request("mlxd/models", {})
        assert r.models[0].loaded is False
