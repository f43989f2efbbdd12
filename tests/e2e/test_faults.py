"""The fault matrix through the real daemon, for each cloud backend kind (OpenAI-compatible and
Anthropic, against the loopback fake providers) and for the local model; then the secrets and
privacy promises under those faults.

Every cloud fault is tried twice: in the chain [cloud, local] (the local model serves, and
`attempts` names the failure) and with the cloud backend forced (a -32803 whose `data.attempts`
names it). After each one: exactly one response per request, no work left running, and the
next request is served by the healthy cloud. One daemon per backend kind serves the whole table,
at debug log level; its stderr and everything it sent are then searched for the API keys.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import pytest_lsp.client
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import REPO, Session, _plain, chat_params, daemon, write_config
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import daemon_env, free_port

from .test_router import make_config

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

KEY = "sk-faults-4c1e9a7b2d6f3e80"  # the env key of every cloud backend here
HANDED_KEY = "sk-handed-over-77b3c9d1e5a2"  # one the editor hands over with mlxd/setApiKey
ENV = {"FAKE_KEY": KEY, "MLXD_LOG_LEVEL": "DEBUG"}
TIMEOUTS = {"connect_s": 1.0, "first_token_s": 2.0, "idle_s": 2.5, "total_s": 20.0}
UNREACHABLE = ["refused", "dns", "tls"]  # backends whose address is the fault


def stderr_tee(sink: list[bytes]) -> Callable[[Any], Any]:
    """pytest-lsp forwards the daemon's stderr into whichever test runs; keep all of it."""

    async def forward(server: Any) -> None:
        while (line := await server.stderr.readline()) != b"":
            sink.append(line)
            sys.stderr.buffer.write(line)

    return forward


@dataclass
class Rig:
    """One daemon (and its fake provider) for one backend kind, shared by the table below."""

    kind: str
    fake: FakeProvider
    s: Session
    stderr: list[bytes]
    answers: Counter[Any] = field(default_factory=Counter)  # response id -> responses
    seen: list[Any] = field(default_factory=list)  # every result and error the client got

    async def chat(self, token: str, **extra: Any) -> Any:
        params = chat_params("Say hello.", token=token, maxTokens=6, temperature=0, **extra)
        try:
            result = await self.s.request("mlxd/chat", params)
        except JsonRpcException as exc:
            self.seen.append({"code": exc.code, "message": exc.message, "data": exc.data})
            raise
        self.seen.append(result)
        return result

    def deltas(self, token: str) -> list[tuple[str, str]]:
        return [(v["delta"], v["backend"]) for v in self.s.progress.get(token, [])]

    async def settled(self) -> None:
        """Each request was answered exactly once, and no local generation is left running."""
        await asyncio.sleep(0.05)
        assert all(n == 1 for n in self.answers.values()), self.answers
        deadline = time.monotonic() + 10
        while True:
            stats = await self.s.request("mlxd/stats", {})
            if all(e["active"] == 0 for e in _plain(stats)["local"].values()):
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.05)

    def everything_sent(self) -> str:
        s = self.s
        sent = [self.seen, s.statuses, s.progress, s.logs, [m.message for m in s.messages]]
        return json.dumps(sent, default=lambda o: getattr(o, "__dict__", repr(o)))


def base_url(kind: str, root: str) -> str:
    return f"{root}/v1" if kind == "openai" else root


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["openai", "anthropic"])
async def rig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> AsyncIterator[Rig]:
    kind = request.param
    async with FakeProvider(require_key=KEY) as fake, AsyncExitStack() as stack:
        cfg = make_config(
            tmp_path_factory.mktemp(f"faults-{kind}") / "mlxd.toml",
            tiny_model,
            {
                "cloud": (kind, base_url(kind, fake.root_url)),
                "refused": (kind, base_url(kind, f"http://127.0.0.1:{free_port()}")),
                "dns": (kind, base_url(kind, "http://does-not-exist.invalid")),
                "tls": (kind, base_url(kind, f"https://127.0.0.1:{fake.port}")),  # plain HTTP
            },
            {
                "chat": ["cloud", "local"],
                "models": {name: [name, "local"] for name in UNREACHABLE},
                "max_retries": 1,
            },
            TIMEOUTS,
        )
        stderr: list[bytes] = []
        forward = pytest_lsp.client.forward_stderr
        pytest_lsp.client.forward_stderr = stderr_tee(stderr)
        try:
            s = await stack.enter_async_context(daemon(cfg, env=ENV))
        finally:
            pytest_lsp.client.forward_stderr = forward
        r = Rig(kind, fake, s, stderr)
        handle = s.client.protocol._handle_response

        def count(msg_id: Any, *args: Any, **kwargs: Any) -> Any:
            r.answers[msg_id] += 1
            return handle(msg_id, *args, **kwargs)

        s.client.protocol._handle_response = count
        await s.wait_status("ready")
        yield r


@pytest.fixture
def fresh(rig: Rig) -> Rig:
    """The rig with the fake's queue and counters cleared and the healthy default reply."""
    rig.fake.reset()
    rig.answers.clear()
    return rig


# --- the cloud fault table --------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    name: str
    replies: tuple[Reply, ...]  # what the fake answers (nothing: the address is the fault)
    chain_error: str  # the attempt's error in the chain [cloud, local] starts with this
    forced_error: str  # ... and when the cloud backend is forced
    streamed: int = 0  # characters the cloud streamed before failing
    served_by_cloud: bool = False  # not a failure at all (trickle)


def _401_echoing_key() -> Reply:
    return Reply.status(401, message=f"Incorrect API key provided: {KEY}.")


FAULTS = [
    Fault("refused", (), "connect:", "connect:"),
    Fault("dns", (), "connect:", "connect:"),
    Fault("tls", (), "connect:", "connect:"),
    Fault(
        "hang before headers",
        (Reply.hang_before_headers(),),
        "timeout: no token within 2.0s",
        "timeout: no response headers for 2.5s",
    ),
    Fault(
        "hang after headers",
        (Reply.hang_after_headers(),),
        "timeout: no token within 2.0s",
        "timeout: no data for 2.5s",
    ),
    Fault(
        "silence mid-stream",
        (Reply.hang_after_headers(after=1),),
        "timeout: no data for 2.5s",
        "timeout: no data for 2.5s",
        streamed=len("Hello"),
    ),
    Fault(
        "trickle",
        (Reply.trickle(["Hel", "lo", "!"], interval_s=1.0),),
        "",
        "",
        served_by_cloud=True,
    ),
    Fault("401", (Reply.status(401),), "http 401", "http 401"),
    Fault("401 echoing the key", (_401_echoing_key(),), "http 401", "http 401"),
    Fault("404", (Reply.status(404),), "http 404", "http 404"),
    Fault("429", (Reply.status(429), Reply.status(429)), "http 429", "http 429"),
    Fault("500", (Reply.status(500),), "http 500", "http 500"),
    # a 503 is retried (issue 5): a persistent one answers every try (1 + max_retries)
    Fault("503", (Reply.status(503),) * 3, "http 503", "http 503"),
    Fault("bad SSE", (Reply.malformed(after=0),), "protocol:", "protocol:"),
    Fault("stream cut", (Reply.cut(after=2),), "stream_cut:", "stream_cut:", streamed=6),
    Fault("oversized", (Reply.oversized(),), "protocol:", "protocol:"),
]


def where(fault: Fault) -> dict[str, Any]:
    """How a request reaches the faulty backend: through its alias chain, or forced."""
    name = fault.name if fault.name in UNREACHABLE else "cloud"
    return {"chain": {"model": name} if name != "cloud" else {}, "forced": {"backend": name}}


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_cloud_fault_falls_back_to_local_in_a_chain(fresh: Rig, fault: Fault) -> None:
    r = fresh
    r.fake.enqueue(*fault.replies)
    token = f"chain-{r.kind}-{fault.name}"
    t0 = time.monotonic()
    result = await r.chat(token, **where(fault)["chain"])
    elapsed = time.monotonic() - t0
    deltas = r.deltas(token)
    assert result.text == "".join(d for d, _ in deltas)
    if fault.served_by_cloud:
        assert (result.backend, result.text, result.attempts) == ("cloud", "Hello!", [])
        assert elapsed > 1.9  # it did trickle: three pieces a second apart
    else:
        assert result.backend == "local"
        (attempt,) = result.attempts
        assert attempt.backend == where(fault)["forced"]["backend"]
        assert attempt.error.startswith(fault.chain_error), attempt.error
        # "Hello" / "Hello," came first (frames are not tokens: a turn's deltas share one)
        names = [b for _, b in deltas]
        n_cloud = names.count("cloud")
        assert names[:n_cloud] == ["cloud"] * n_cloud and set(names[n_cloud:]) == {"local"}
        assert "".join(d for d, _ in deltas[:n_cloud]) == "Hello,"[: fault.streamed]
        if fault.streamed:
            assert attempt.error.endswith(f"after {fault.streamed} chars streamed")
            assert result.text.startswith("Hello")
    # No upper time bound: the attempt's error (chain_error) names the phase that ended it.
    if fault.name.startswith(("hang", "silence")):
        await r.fake.wait_disconnect()  # the abandoned HTTP stream was closed
    await r.settled()
    await served_normally(r)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_cloud_fault_on_a_forced_backend_is_a_clear_error(fresh: Rig, fault: Fault) -> None:
    r = fresh
    r.fake.enqueue(*fault.replies)
    token = f"forced-{r.kind}-{fault.name}"
    backend = where(fault)["forced"]["backend"]
    if fault.served_by_cloud:
        result = await r.chat(token, backend=backend)
        assert (result.backend, result.text, result.attempts) == ("cloud", "Hello!", [])
    else:
        with pytest.raises(JsonRpcException) as err:
            await r.chat(token, backend=backend)
        assert err.value.code == -32803
        (attempt,) = err.value.data["attempts"]
        assert attempt["backend"] == backend
        assert attempt["error"].startswith(fault.forced_error), attempt["error"]
        assert attempt["error"] in err.value.message
        assert {b for _, b in r.deltas(token)} <= {backend}  # no fallback to local
    if fault.name.startswith(("hang", "silence")):
        await r.fake.wait_disconnect()
    await r.settled()
    await served_normally(r)


async def served_normally(r: Rig) -> None:
    """The next request, on the healthy fake, is answered by the cloud in full."""
    r.fake.reset()
    result = await r.chat("next", backend="cloud")
    assert (result.backend, result.text, result.attempts) == ("cloud", "Hello, world!", [])
    assert all(n == 1 for n in r.answers.values()), r.answers


async def test_cancel_mid_stream_closes_the_upstream_connection(fresh: Rig) -> None:
    """$/cancelRequest while the cloud streams: -32800 at once, and the fake sees its
    connection dropped (the HTTP stream is closed, not left to run)."""
    r = fresh
    r.fake.enqueue(Reply.trickle(["tick"] * 50, interval_s=0.2))
    msg_id, fut = r.s.start("mlxd/chat", chat_params("go", token="cancel-me", backend="cloud"))
    while not r.deltas("cancel-me"):
        await asyncio.sleep(0.01)
    r.s.cancel(msg_id)
    with pytest.raises(JsonRpcException) as err:
        await fut
    assert err.value.code == -32800
    assert len(r.deltas("cancel-me")) < 50  # answered before the 50-piece stream ended
    await r.fake.wait_disconnect()
    assert r.fake.request_count == 1
    await r.settled()
    await served_normally(r)


async def test_cancel_during_a_retry_wait_abandons_it(fresh: Rig) -> None:
    """A 429 whose Retry-After fits the forced backend's budget: the client cancels during the
    wait; the answer is -32800 at once and the retry is never sent."""
    r = fresh
    r.fake.enqueue(Reply.status(429, retry_after=3))
    msg_id, fut = r.s.start("mlxd/chat", chat_params("go", backend="cloud", maxTokens=4))
    while r.fake.request_count < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the 429 is in, the wait has begun
    r.s.cancel(msg_id)
    with pytest.raises(JsonRpcException) as err:
        await fut
    assert err.value.code == -32800
    assert r.fake.request_count == 1  # answered during the wait, before the retry was sent
    await asyncio.sleep(3.2)  # past the Retry-After: still no second request
    assert r.fake.request_count == 1
    await r.settled()
    await served_normally(r)


async def test_the_key_never_leaves_during_the_fault_matrix(fresh: Rig) -> None:
    """Runs after the table (same daemon, debug logging): the env key and one handed over with
    mlxd/setApiKey, which a provider then echoes in a 401, appear nowhere the daemon wrote."""
    r = fresh
    r.fake.require_key = HANDED_KEY
    try:
        key = {"backend": "cloud", "apiKey": f"  {HANDED_KEY}\n"}
        assert _plain(await r.s.request("mlxd/setApiKey", key)) == {}
        result = await r.chat("handed-ok", backend="cloud")  # the fake checks the key
        assert result.text == "Hello, world!"
        r.fake.enqueue(Reply.status(401, message=f"Incorrect API key provided: {HANDED_KEY}."))
        with pytest.raises(JsonRpcException) as err:
            await r.chat("handed-401", backend="cloud")
        assert "[REDACTED]" in err.value.data["attempts"][0]["error"]
        r.fake.enqueue(Reply.status(500, message=f"upstream saw {HANDED_KEY} and {KEY}"))
        with pytest.raises(JsonRpcException):
            await r.chat("handed-500", backend="cloud")
        r.fake.enqueue(Reply.cut(after=1))
        with pytest.raises(JsonRpcException):
            await r.chat("handed-cut", backend="cloud")
    finally:
        r.fake.require_key = KEY
    assert _plain(await r.s.request("mlxd/setApiKey", {"backend": "cloud", "apiKey": KEY})) == {}
    await served_normally(r)

    await asyncio.sleep(0.2)  # let the last stderr lines arrive
    stderr = b"".join(r.stderr).decode("utf-8", "replace")
    sent = r.everything_sent()  # logMessage included: records go there while connected
    logs = "\n".join(r.s.logs)
    assert "cloud: POST " in logs and "http 401" in logs  # the debug log did cover the faults
    assert "[REDACTED]" in sent  # the echoed keys were caught, not merely absent
    for key in (KEY, HANDED_KEY):
        assert key not in stderr
        assert key not in sent


# --- local faults -----------------------------------------------------------------------------
def _missing(tmp: Path, tiny: Path) -> tuple[str, str]:
    return str(tmp / "no" / "such-model"), "does not exist"


def _corrupt(tmp: Path, tiny: Path) -> tuple[str, str]:
    broken = shutil.copytree(tiny, tmp / "corrupt")
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 1000)
    return str(broken), "cannot read the weights"


def _unsupported(tmp: Path, tiny: Path) -> tuple[str, str]:
    odd = shutil.copytree(tiny, tmp / "odd")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(config | {"model_type": "nonexistent"}))
    return str(odd), "unsupported model architecture 'nonexistent'"


def _over_budget(tmp: Path, tiny: Path) -> tuple[str, str]:
    return str(tiny), "over the memory budget"


LOCAL_FAULTS = {
    "model path missing": _missing,
    "corrupt weights": _corrupt,
    "unsupported architecture": _unsupported,
    "out of memory on load": _over_budget,
}


@pytest.mark.parametrize("name", list(LOCAL_FAULTS))
async def test_local_model_fault_is_a_clear_error_or_falls_back_to_the_cloud(
    tmp_path: Path, tiny_model: Path, name: str
) -> None:
    model, problem = LOCAL_FAULTS[name](tmp_path, tiny_model)
    budget = 1e-6 if name == "out of memory on load" else 0
    async with FakeProvider(require_key=KEY) as fake:
        cfg = write_config(
            tmp_path / "mlxd.toml",
            f"""
[local]
model = {json.dumps(model)}
memory_limit_gb = {budget}
[backends.cloud]
protocol = "openai"
base_url = "{fake.openai_url}"
api_key_env = "FAKE_KEY"
model = "cloud-model"
[routing]
cloud = true
chat = ["local", "cloud"]
complete = ["local"]
""",
        )
        async with daemon(cfg, env=ENV) as s:
            status = await s.wait_status("degraded", "error")
            assert status["backends"]["local"] == "error" and problem in status["message"]
            # the chain [local, cloud]: the cloud serves, attempts says why local did not
            r = await s.request("mlxd/chat", chat_params("hi", token="t", maxTokens=4))
            assert r.backend == "cloud" and r.text == "Hello, world!"
            (attempt,) = r.attempts
            assert attempt.backend == "local" and attempt.error.startswith("model:")
            assert problem in attempt.error
            # local alone: a clear -32803, every time (the load is retried, not hung)
            for method, params in (
                ("mlxd/complete", {"prefix": "x = ", "maxTokens": 4}),
                ("mlxd/chat", chat_params("hi", backend="local")),
            ):
                with pytest.raises(JsonRpcException) as err:
                    await s.request(method, params)  # a hang fails on the file's timeout
                assert err.value.code == -32803
                assert problem in err.value.message
                assert err.value.data["attempts"][0]["backend"] == "local"
            # and the daemon serves on
            r = await s.request("mlxd/chat", chat_params("again", maxTokens=4))
            assert r.backend == "cloud"
            models = await s.request("mlxd/models", {})
            assert models.models[0].loaded is False
        assert fake.request_count == 2


# --- secrets and privacy ------------------------------------------------------------------------
async def test_doctor_shows_a_configured_key_as_present_never_its_value(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = make_config(
        tmp_path / "doctor.toml",
        tiny_model,
        {
            "openai": ("openai", "https://api.openai.com/v1"),
            "claude": ("anthropic", "http://127.0.0.1:9"),
        },
        {"chat": ["openai", "local"]},
    )
    env = {**daemon_env(ENV), "PYTHONPATH": str(REPO)}
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mlxd", "doctor", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "key: present" in out.stdout  # the key was found ...
    assert "[ok  ] backend openai" in out.stdout
    assert KEY not in text  # ... and never printed
    assert KEY[-6:] not in text  # not even its tail


async def test_cloud_off_and_excluded_documents_send_nothing_upstream_for_any_request_kind(
    tmp_path: Path, tiny_model: Path
) -> None:
    """test_router covers chat; here mlxd/complete and inline completion too, counted at the
    fake, with the cloud first in every chain."""
    async with FakeProvider(require_key=KEY) as fake:
        chains = {
            "chat": ["cloud", "local"],
            "complete": ["cloud", "local"],
            "inline": ["cloud", "local"],
        }
        for cloud in (False, True):
            cfg = make_config(
                tmp_path / f"privacy-{cloud}.toml",
                tiny_model,
                {"cloud": ("openai", fake.openai_url)},
                {"cloud": cloud, **chains},
            )
            async with daemon(cfg, env=ENV) as s:
                await s.wait_status("ready")
                uris = ["file:///p/.env", "file:///p/certs/server.pem", "file:///p/secrets/db.py"]
                if not cloud:
                    uris.append("file:///p/ordinary.py")  # cloud off: nothing goes, whatever it is
                for uri in uris:
                    c = await s.request(
                        "mlxd/complete",
                        {"prefix": "x = ", "maxTokens": 3, "textDocument": {"uri": uri}},
                    )
                    assert c.backend == "local", uri
                    s.client.text_document_did_open(
                        T.DidOpenTextDocumentParams(
                            T.TextDocumentItem(uri, "python", 1, "token = ")
                        )
                    )
                    await s.client.text_document_inline_completion_async(
                        T.InlineCompletionParams(
                            text_document=T.TextDocumentIdentifier(uri),
                            position=T.Position(0, 8),
                            context=T.InlineCompletionContext(
                                trigger_kind=T.InlineCompletionTriggerKind.Automatic
                            ),
                        )
                    )
                stats = await s.request("mlxd/stats", {})
                assert stats.inline.generations == len(uris)  # each was served, locally
        assert fake.request_count == 0 and fake.bytes_received == 0
