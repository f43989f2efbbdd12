"""Protocol fuzzing against one long-lived real daemon: whatever arrives on stdin, the daemon
answers every request exactly once with the JSON-RPC error the contract names (or a result),
stays silent for notifications, writes nothing but frames to stdout, never allocates what a
Content-Length merely claims, and serves the next valid request.

One daemon serves the whole module (started once; hypothesis examples run against it back to
back), so a message that leaves it in a bad state fails the examples after it. Each example
ends with a sentinel request (`mlxd/models`, answered synchronously as it is read): once its
answer is in, every frame sent before it has been dispatched. At the end the module checks the
ledger: every request id got exactly as many responses as requests were sent with it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_config
from tests.kit import frame

from .test_protocol_errors import Raw

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=40)

DOC = "file:///fuzz/doc.py"
DOC_TEXT = "def add(a, b):\n    return a + b\n\nprint(add(1, "
RESULT = "result"  # an outcome: the request got a result, not an error
ANY_ANSWER = frozenset({RESULT, -32602, -32600, -32803, -32800})

NOTIFICATIONS = [
    "initialized",
    "$/cancelRequest",
    "$/setTrace",
    "textDocument/didClose",
    "textDocument/didSave",
    "window/workDoneProgress/cancel",
]
REQUESTS = [
    "mlxd/chat",
    "mlxd/complete",
    "mlxd/models",
    "mlxd/setApiKey",
    "mlxd/stats",
    "textDocument/inlineCompletion",
]
UNKNOWN = ["mlxd/nope", "textDocument/hover", "x/y", "mlxd/Chat", ""]
# Never sent by the fuzzer: they end the process or replace its config on purpose.
FORBIDDEN = {
    "exit",
    "shutdown",
    "initialize",
    "workspace/didChangeConfiguration",
    "workspace/executeCommand",
    "textDocument/didOpen",
    "textDocument/didChange",
}


# --- a background event loop: hypothesis drives sync tests, the daemon lives in the loop ----
class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def outcome(frame: dict[str, Any]) -> Any:
    return RESULT if "result" in frame else frame["error"]["code"]


def rss_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


@dataclass
class Expect:
    """What one example must produce, besides the sentinel's answer."""

    ids: dict[Any, tuple[int, frozenset[Any]]] = field(default_factory=dict)  # id: (n, allowed)
    nulls: list[int] = field(default_factory=list)  # codes of errors with "id": null, in order

    def want(self, msg_id: Any, allowed: Any, n: int = 1) -> None:
        old_n, old = self.ids.get(msg_id, (0, frozenset()))
        allowed = frozenset(allowed if isinstance(allowed, set | frozenset) else {allowed})
        self.ids[msg_id] = (old_n + n, old | allowed)


Sender = bytes | Callable[[], Awaitable[None]]


class Fuzzer:
    def __init__(self, loop: Loop, raw: Raw) -> None:
        self.loop = loop
        self.raw = raw
        self.sent: Counter[Any] = Counter()  # request id -> requests sent with it
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"fz-{next(self._ids)}"

    async def call(self, method: str, params: Any) -> dict[str, Any]:
        """A request of our own, under an id no fuzzed message can have taken."""
        msg_id = f"own-{self.new_id()}"
        self.sent[msg_id] += 1
        self.raw.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return await self.raw.response(msg_id)

    def exchange(
        self, send: Sender, expect: Expect, *, allow_show: bool = False, wait: float = 10
    ) -> list[dict[str, Any]]:
        """Send (bytes, or a coroutine that sends), then a sentinel request; check what came
        back against `expect`. Returns the frames that arrived meanwhile."""
        return self.loop.run(self._exchange(send, expect, allow_show, wait))

    async def _exchange(
        self, send: Sender, expect: Expect, allow_show: bool, wait: float
    ) -> list[dict[str, Any]]:
        raw = self.raw
        assert raw.proc.returncode is None, "the daemon died"
        n0 = len(raw.frames)
        for msg_id, (n, _) in expect.ids.items():
            self.sent[msg_id] += n
        if isinstance(send, bytes):
            raw.send_bytes(send)
        else:
            await send()

        def answers(msg_id: Any) -> list[dict[str, Any]]:
            return [f for f in raw.frames[n0:] if "method" not in f and f.get("id") == msg_id]

        deadline = time.monotonic() + wait
        while any(len(answers(i)) < n for i, (n, _) in expect.ids.items()):
            assert raw.proc.returncode is None, "the daemon died"
            assert time.monotonic() < deadline, f"unanswered: {expect.ids} in {raw.frames[n0:]}"
            await asyncio.sleep(0.005)
        sentinel = await self.call("mlxd/models", {})  # also: the daemon still serves
        assert "result" in sentinel, sentinel
        await asyncio.sleep(0.01)
        new = raw.frames[n0:]
        responses = [f for f in new if "method" not in f and f is not sentinel]
        assert [f["error"]["code"] for f in responses if f.get("id") is None] == expect.nulls, new
        for msg_id, (n, allowed) in expect.ids.items():
            got = answers(msg_id)
            assert len(got) == n, (msg_id, got)
            assert {outcome(f) for f in got} <= allowed, (msg_id, got, allowed)
        extra = [f for f in responses if f.get("id") is not None and f["id"] not in expect.ids]
        assert extra == [], f"answers to no request: {extra}"
        assert all(outcome(f) != -32603 for f in responses), responses  # no internal error
        errors_logged = [
            f["params"]["message"]
            for f in new
            if f.get("method") == "window/logMessage" and f["params"]["type"] == 1
        ]
        assert errors_logged == [], errors_logged
        if not allow_show:
            shown = [f for f in new if f.get("method") == "window/showMessage"]
            assert shown == [], shown
        assert raw.stray == []
        return new

    def request(self, msg_id: Any, method: str, params: Any) -> bytes:
        return frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    def stats(self) -> dict[str, Any]:
        return self.loop.run(self.call("mlxd/stats", {}))["result"]

    def wait_idle(self, timeout: float = 10) -> None:
        """No local generation left running (cancelled work really stopped)."""
        deadline = time.monotonic() + timeout
        while True:
            local = self.stats()["local"]
            if all(e["active"] == 0 for e in local.values()):
                return
            assert time.monotonic() < deadline, f"work left running: {local}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def fz(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Fuzzer]:
    cfg = write_config(
        tmp_path_factory.mktemp("fuzz") / "mlxd.toml",
        f"""
[local]
model = "{tiny_model}"
max_tokens = 8
[backends.cloud]
protocol = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "fuzz-model"
[routing]
cloud = false
[inline]
max_tokens = 8
max_ms = 20000
""",
    )
    loop = Loop()

    async def start() -> Raw:
        raw = await Raw.start(cfg)
        await raw.initialize()
        doc = {"uri": DOC, "languageId": "python", "version": 1, "text": DOC_TEXT}
        raw.send(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}
        )
        warm = await raw.request(
            "mlxd/chat", {"messages": [{"role": "user", "content": "warm up"}], "maxTokens": 2}
        )
        assert "result" in warm, warm
        return raw

    raw = loop.run(start())
    fuzzer = Fuzzer(loop, raw)
    try:
        yield fuzzer
        # The ledger: every request id answered exactly as often as it was sent.
        loop.run(asyncio.sleep(0.5))
        answered = Counter(
            f["id"] for f in raw.frames if "method" not in f and f.get("id") is not None
        )
        for msg_id, n in fuzzer.sent.items():
            assert answered[msg_id] == n, (msg_id, answered[msg_id], n)
        assert raw.stray == []
        assert raw.proc.returncode is None
    finally:
        loop.run(raw.kill())
        loop.close()


# --- strategies -------------------------------------------------------------------------------
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_JTYPES: dict[type, str] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    dict: "dict",
}


def jtype(v: Any) -> str:
    return _JTYPES[type(v)]


def json_except(*types: str) -> st.SearchStrategy[Any]:
    """Any JSON value whose type is none of `types` ("null", "bool", "int", ...)."""
    return JSON.filter(lambda v: jtype(v) not in types)


def not_an_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return True
    return False


IDS = st.integers(0, 2**31) | st.text(min_size=1, max_size=8)
METHODS = st.sampled_from(REQUESTS + NOTIFICATIONS + UNKNOWN) | st.text(max_size=16).filter(
    lambda m: m not in FORBIDDEN
)


# --- the contract as an oracle (docs/protocol.md, "Transport and framing") --------------------
def oracle(msg: Any) -> Expect:
    """What the contract says the daemon answers to one well-framed JSON body."""
    e = Expect()
    if not isinstance(msg, dict):
        e.nulls.append(-32600)
        return e
    has_id = "id" in msg
    msg_id = msg.get("id")
    if has_id and (isinstance(msg_id, bool) or not isinstance(msg_id, int | str)):
        e.nulls.append(-32600)
        return e
    method = msg.get("method")
    bad_method = "method" in msg and not isinstance(method, str)
    if msg.get("jsonrpc") != "2.0" or bad_method:
        if has_id:
            e.want(msg_id, -32600)
        return e
    if method is None or not has_id:
        return e  # a notification, or a response from the client: silence
    if "error" in msg:
        e.want(msg_id, -32600)
    elif method in NOTIFICATIONS:
        e.want(msg_id, -32601)
    elif method in REQUESTS:
        e.want(msg_id, ANY_ANSWER)
    else:
        e.want(msg_id, -32601)
    return e


MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | JSON,
        "id": IDS | JSON,
        "method": METHODS | JSON,
        "params": JSON,
        "result": JSON,
        "error": JSON,
    },
).filter(lambda m: m.get("method") not in FORBIDDEN if isinstance(m.get("method"), str) else True)


# --- framing ----------------------------------------------------------------------------------
@FUZZ
@given(junk=st.binary(max_size=4096))
def test_unframed_random_bytes_are_skipped_silently(fz: Fuzzer, junk: bytes) -> None:
    """Bytes outside any frame are header garbage: dropped without an answer; the next frame
    (whose header line they may run into) is still understood."""
    fz.exchange(junk, Expect())


@FUZZ
@given(body=st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v).encode()))
def test_framed_random_bytes_get_parse_error_or_invalid_request(fz: Fuzzer, body: bytes) -> None:
    e = Expect()
    try:
        value = json.loads(body)
    except ValueError:
        e.nulls.append(-32700)
    else:
        e = oracle(value)
    fz.exchange(frame(body), e)


@FUZZ
@given(msg=MESSAGES, newline=st.sampled_from([b"\r\n", b"\n"]))
def test_json_that_is_not_json_rpc_gets_the_contracts_answer(
    fz: Fuzzer, msg: dict[str, Any], newline: bytes
) -> None:
    """Valid JSON objects with any subset of the JSON-RPC keys, each of any type: the error the
    transport table names, silence for notifications and client responses, one answer per id."""
    if isinstance(msg.get("id"), int | str) and not isinstance(msg.get("id"), bool):
        msg["id"] = f"{fz.new_id()}:{msg['id']!s}"  # unique, so answers cannot be confused
    body = json.dumps(msg).encode()
    payload = b"Content-Length: %d%s%s" % (len(body), newline, newline) + body
    fz.exchange(payload, oracle(msg), allow_show=True)


@FUZZ
@given(
    method=st.sampled_from(["mlxd/models", "mlxd/stats", "mlxd/chat"]),
    delta=st.integers(-200, 200).filter(lambda d: d != 0),
    filler=st.binary(max_size=200) | st.just(b"") | st.just(b" " * 200),
)
def test_wrong_content_length_costs_one_message_at_most(
    fz: Fuzzer, method: str, delta: int, filler: bytes
) -> None:
    """A length that is too small cuts the body (parse error; the rest is skipped as header
    garbage). One that is too large swallows the next bytes until it is filled: we send exactly
    that many filler bytes, so the body is the message plus filler. Either way the frame after
    it is understood."""
    msg_id = fz.new_id()
    params: Any = {"messages": [{"role": "user", "content": "x"}], "maxTokens": 1}
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": msg_id,
            "method": method,
            "params": params if "chat" in method else {},
        }
    ).encode()
    length = max(1, len(body) + delta)
    e = Expect()
    fill = b""
    if length < len(body):
        e.nulls.append(-32700)  # a cut JSON object is never valid JSON
    else:
        missing = length - len(body)
        fill = ((filler or b" ") * missing)[:missing]
        try:
            json.loads(body + fill)
        except ValueError:
            e.nulls.append(-32700)
        else:
            e.want(msg_id, RESULT)
    fz.exchange(b"Content-Length: %d\r\n\r\n" % length + body + fill, e)


HEADER_NAME = st.sampled_from(
    ["Content-Length", "content-length", "CONTENT-LENGTH", "Content-length"]
)
EXTRA_HEADERS = st.lists(
    st.sampled_from(
        [
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8",
            b"Content-Type: text/plain",
            b"X-Whatever: 1",
            b"Garbage without colon",
            b"x" * 9000,  # over the 8 KiB header-line limit: dropped
            b"X-Long: " + b"y" * 40000,  # over the reader's 16 KiB line buffer: dropped in pieces
        ]
    ),
    max_size=3,
)


@FUZZ
@given(
    name=HEADER_NAME,
    space=st.sampled_from([b"", b" ", b"  ", b"\t"]),
    extra_before=EXTRA_HEADERS,
    extra_after=EXTRA_HEADERS,
    newline=st.sampled_from([b"\r\n", b"\n"]),
    blank_lines=st.integers(0, 3),
)
def test_header_variants_are_understood(
    fz: Fuzzer,
    name: str,
    space: bytes,
    extra_before: list[bytes],
    extra_after: list[bytes],
    newline: bytes,
    blank_lines: int,
) -> None:
    msg_id = fz.new_id()
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "mlxd/stats"}).encode()
    lines = [*extra_before, name.encode() + b":" + space + str(len(body)).encode(), *extra_after]
    payload = newline * blank_lines + newline.join(lines) + newline + newline + body
    e = Expect()
    e.want(msg_id, RESULT)
    fz.exchange(payload, e)


@FUZZ
@given(
    header=st.sampled_from(
        [
            b"",
            b"Content-Type: application/json\r\n",
            b"Content-Length: abc\r\n",
            b"Content-Length: -5\r\n",
            b"Content-Length:\r\n",
            b"Content-Lenght: 40\r\n",
            b"Length: 40\r\n",
        ]
    ),
    method=st.sampled_from(["mlxd/models", "mlxd/chat", "no/such"]),
)
def test_a_frame_without_a_usable_length_is_dropped_and_the_next_is_served(
    fz: Fuzzer, header: bytes, method: str
) -> None:
    """Without a Content-Length the body cannot be told from header garbage: it is skipped
    (no answer is possible, the id was never read), and the next frame is understood."""
    msg_id = fz.new_id()
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {}}).encode()
    fz.exchange(header + b"\r\n" + body, Expect())


def test_two_gigabytes_announced_are_streamed_past_in_bounded_memory(fz: Fuzzer) -> None:
    """2 GB announced and really sent: read and dropped in pieces (RSS sampled all along stays
    near its start), answered -32600, and the next request is served."""
    raw = fz.raw
    claim = 2 * 1024**3
    chunk = b"x" * (1 << 20)

    rss: list[int] = [rss_kb(raw.proc.pid)]

    async def flood() -> None:
        assert raw.proc.stdin is not None
        raw.send_bytes(b"Content-Length: %d\r\n\r\n" % claim)
        for i in range(claim // len(chunk)):
            raw.proc.stdin.write(chunk)
            await raw.proc.stdin.drain()
            if i % 32 == 0:
                rss.append(rss_kb(raw.proc.pid))

    fz.exchange(flood, Expect(nulls=[-32600]), wait=240)
    assert len(rss) > 60
    assert max(rss) - rss[0] < 96 * 1024, rss  # KiB: a 2 GB buffer would be 20x that


async def test_lengths_beyond_any_size_never_allocate_and_eof_still_ends(tiny_config: Path) -> None:
    """A length of 30 digits is never filled: memory stays flat while junk arrives, and closing
    stdin still ends the daemon at once with exit code 0."""
    d = await Raw.start(tiny_config)
    await d.initialize()
    await d.request("mlxd/models", {})
    base = rss_kb(d.proc.pid)
    d.send_bytes(b"Content-Length: " + b"9" * 30 + b"\r\n\r\n")
    assert d.proc.stdin is not None
    for _ in range(128):
        d.proc.stdin.write(b"\x00" * (1 << 20))
        await d.proc.stdin.drain()
    assert rss_kb(d.proc.pid) - base < 96 * 1024
    assert d.proc.returncode is None
    d.proc.stdin.close()
    assert await d.wait(10) == 0
    assert d.stray == []


# --- wrong types in every field of every method ------------------------------------------------
CHAT_BASE: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 1}
COMPLETE_BASE: dict[str, Any] = {"prefix": "x = ", "maxTokens": 1}
KEY_BASE: dict[str, Any] = {"backend": "cloud", "apiKey": "sk-fuzz-0000"}

NOT_OPTIONAL_STR = json_except("str", "null")
TOKEN = json_except("int", "str", "null")
MAX_TOKENS = (
    json_except("int", "null") | st.integers(max_value=0) | st.integers(min_value=1_000_001)
)
TEMPERATURE = (
    json_except("int", "float", "null")
    | st.floats(min_value=2.0, exclude_min=True, allow_infinity=False)
    | st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)
)
STOP = json_except("list") | st.lists(json_except("str"), min_size=1, max_size=3).map(
    lambda xs: ["ok", *xs]
)
TEXT_DOCUMENT = (
    json_except("dict", "null")
    | st.just({})
    | st.builds(lambda u: {"uri": u}, json_except("str"))
    | st.just({"uri": "file:///a", "extra": 1})
)
SHARED: dict[str, st.SearchStrategy[Any]] = {
    "model": NOT_OPTIONAL_STR,
    "backend": NOT_OPTIONAL_STR,
    "maxTokens": MAX_TOKENS,
    "temperature": TEMPERATURE,
    "stop": STOP,
    "textDocument": TEXT_DOCUMENT,
    "partialResultToken": TOKEN,
    "workDoneToken": TOKEN,
}
NON_EMPTY_STR_WRONG = json_except("str") | st.just("")
UNKNOWN_KEY = st.from_regex(r"[a-z][A-Za-z0-9_]{0,10}", fullmatch=True)


@dataclass(frozen=True)
class Method:
    name: str
    base: dict[str, Any]
    fields: dict[str, st.SearchStrategy[Any]]
    required: tuple[str, ...] = ()


def _set(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(params))
    if path.startswith("messages[0]."):
        out["messages"][0][path.split(".", 1)[1]] = value
    else:
        out[path] = value
    return out


MLXD_METHODS = [
    Method(
        "mlxd/chat",
        CHAT_BASE,
        {
            "messages": json_except("list")
            | st.just([])
            | st.lists(json_except("dict"), min_size=1, max_size=3),
            "messages[0].role": JSON.filter(lambda v: v not in ("system", "user", "assistant")),
            "messages[0].content": json_except("str"),
            **SHARED,
        },
        ("messages",),
    ),
    Method(
        "mlxd/complete",
        COMPLETE_BASE,
        {
            "prefix": json_except("str"),
            "suffix": json_except("str"),
            "language": json_except("str"),
            **SHARED,
        },
        ("prefix",),
    ),
    Method(
        "mlxd/setApiKey",
        KEY_BASE,
        {
            "backend": NON_EMPTY_STR_WRONG,
            "apiKey": NON_EMPTY_STR_WRONG,
            "persist": json_except("bool"),
        },
        ("backend", "apiKey"),
    ),
    Method("mlxd/models", {}, {"workDoneToken": TOKEN}),
    Method("mlxd/stats", {}, {"workDoneToken": TOKEN}),
]


@st.composite
def bad_mlxd_request(draw: st.DrawFn) -> tuple[str, Any, str | None]:
    """(method, params, the field the -32602 message must name; None: the params as a whole)."""
    m = draw(st.sampled_from(MLXD_METHODS))
    how = draw(st.sampled_from(["field", "field", "field", "unknown", "missing", "whole"]))
    if how == "field" or (how == "missing" and not m.required):
        name = draw(st.sampled_from(sorted(m.fields)))
        return m.name, _set(m.base, name, draw(m.fields[name])), name
    if how == "unknown":
        key = draw(UNKNOWN_KEY.filter(lambda k: k not in m.fields and k not in m.base))
        return m.name, {**m.base, key: draw(JSON)}, key
    if how == "missing":
        name = draw(st.sampled_from(m.required))
        return m.name, {k: v for k, v in m.base.items() if k != name}, name
    # `[]` (by-position params with no entries) is "no parameters" in JSON-RPC, as `null` is:
    # valid where every field is optional (Lua clients send their `{}` so).
    return m.name, draw(json_except("dict", "null").filter(lambda v: v != [])), None


@FUZZ
@given(case=bad_mlxd_request())
def test_wrong_types_in_mlxd_params_get_invalid_params_naming_the_field(
    fz: Fuzzer, case: tuple[str, Any, str | None]
) -> None:
    method, params, field_name = case
    msg_id = fz.new_id()
    e = Expect()
    e.want(msg_id, -32602)
    new = fz.exchange(fz.request(msg_id, method, params), e)
    (answer,) = [f for f in new if f.get("id") == msg_id]
    message = answer["error"]["message"]
    assert message.startswith("Invalid params"), message
    if field_name is not None:
        assert field_name in message, (field_name, message)


@FEW
@given(method=st.sampled_from([m.name for m in MLXD_METHODS]))
def test_valid_mlxd_requests_around_the_fuzz_are_served(fz: Fuzzer, method: str) -> None:
    """The control: the base params of every method above are valid (so the errors are the
    mutation's doing)."""
    m = next(m for m in MLXD_METHODS if m.name == method)
    msg_id = fz.new_id()
    e = Expect()
    e.want(msg_id, RESULT)
    fz.exchange(fz.request(msg_id, method, m.base), e)


NOT_A_UINT = (
    st.none()
    | st.integers(max_value=-1)
    | st.integers(min_value=2**31)
    | st.text(max_size=8).filter(not_an_int)
    | st.lists(SCALARS, max_size=2)
    | st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)
)
INLINE_BASE: dict[str, Any] = {
    "textDocument": {"uri": DOC},
    "position": {"line": 3, "character": 10},
    "context": {"triggerKind": 1},
}
INLINE_FIELDS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    # path in params -> (what the message names, wrong values)
    "textDocument": ("textDocument", json_except("dict")),
    # lsprotocol makes a string of anything here; whatever it is, that document is not open
    "textDocument.uri": ("textDocument", json_except("str")),
    "position": ("position", json_except("dict")),
    "position.line": ("position", NOT_A_UINT),
    "position.character": ("position", NOT_A_UINT),
    "context": ("context", json_except("dict")),
    "context.triggerKind": (
        "context.triggerKind",
        st.none()
        | st.integers().filter(lambda k: k not in (1, 2))
        | st.text(max_size=4)
        | st.lists(SCALARS, max_size=2),
    ),
    "context.selectedCompletionInfo": (
        "context.selectedCompletionInfo",
        json_except("dict", "null"),
    ),
}


def _set_path(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(params))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


@FUZZ
@given(
    path=st.sampled_from(sorted(INLINE_FIELDS)),
    data=st.data(),
)
def test_wrong_types_in_inline_completion_get_invalid_params(
    fz: Fuzzer, path: str, data: st.DataObject
) -> None:
    named, values = INLINE_FIELDS[path]
    params = _set_path(INLINE_BASE, path, data.draw(values))
    msg_id = fz.new_id()
    e = Expect()
    e.want(msg_id, -32602)
    new = fz.exchange(fz.request(msg_id, "textDocument/inlineCompletion", params), e)
    (answer,) = [f for f in new if f.get("id") == msg_id]
    assert named in answer["error"]["message"], answer


@FEW
@given(
    line=st.integers(0, 2**31 - 1),
    character=st.integers(0, 2**31 - 1),
    kind=st.sampled_from([1, 2]),
)
def test_any_in_range_position_is_answered(
    fz: Fuzzer, line: int, character: int, kind: int
) -> None:
    """Positions past the end of the document are valid LSP: an answer, never an error."""
    msg_id = fz.new_id()
    e = Expect()
    e.want(msg_id, RESULT)
    params = {
        **INLINE_BASE,
        "position": {"line": line, "character": character},
        "context": {"triggerKind": kind},
    }
    fz.exchange(fz.request(msg_id, "textDocument/inlineCompletion", params), e)


@FEW
@given(text=st.text(max_size=40), surrogate=st.integers(0xD800, 0xDFFF))
def test_lone_surrogates_in_text_are_served(fz: Fuzzer, text: str, surrogate: int) -> None:
    """JSON can escape a lone UTF-16 surrogate (a JS editor's string of a broken file): the text
    is served with U+FFFD in its place, as an invalid UTF-8 byte would be."""
    escaped = json.dumps(text)[1:-1]  # `text` as it sits between JSON quotes
    content = f"{escaped}\\u{surrogate:04x}{escaped}"
    ids = fz.new_id(), fz.new_id()
    chat = {"messages": [{"role": "user", "content": "@"}], "maxTokens": 2}
    complete = {"prefix": "@", "maxTokens": 2}
    bodies = [
        json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}).replace(
            '"@"', f'"{content}"'
        )
        for i, m, p in zip(ids, ["mlxd/chat", "mlxd/complete"], [chat, complete], strict=True)
    ]
    assert any(0xD800 <= ord(c) <= 0xDFFF for c in json.loads(bodies[1])["params"]["prefix"])
    e = Expect()
    for i in ids:
        e.want(i, RESULT)
    fz.exchange(b"".join(frame(b.encode()) for b in bodies), e)


# --- sequences: ids, cancels, notifications -------------------------------------------------------
def _valid_params(method: str, n: int) -> Any:
    return {
        "mlxd/chat": {"messages": [{"role": "user", "content": "go"}], "maxTokens": n},
        "mlxd/complete": {"prefix": "def f(", "maxTokens": n},
        "mlxd/models": {},
        "mlxd/stats": {},
        "textDocument/inlineCompletion": INLINE_BASE,
    }[method]


OP = st.one_of(
    st.tuples(
        st.just("request"),
        st.sampled_from(
            [
                "mlxd/chat",
                "mlxd/complete",
                "mlxd/models",
                "mlxd/stats",
                "textDocument/inlineCompletion",
            ]
        ),
        st.integers(0, 3),  # the id, from a small pool: duplicates happen
        st.integers(1, 200),  # maxTokens: long enough to be cancelled mid-way
    ),
    st.tuples(st.just("cancel"), st.just(""), st.integers(0, 5), st.just(0)),
    st.tuples(
        st.just("no-id"),
        st.sampled_from(["mlxd/chat", "mlxd/complete", "mlxd/models", "mlxd/stats"]),
        st.just(0),
        st.integers(1, 50),
    ),
    st.tuples(
        st.just("notification-with-id"),
        st.sampled_from(NOTIFICATIONS),
        st.integers(0, 3),
        st.just(0),
    ),
    st.tuples(st.just("pause"), st.just(""), st.just(0), st.integers(1, 30)),
)


@FUZZ
@given(ops=st.lists(OP, min_size=1, max_size=8))
def test_bursts_of_requests_cancels_and_notifications(
    fz: Fuzzer, ops: list[tuple[str, str, int, int]]
) -> None:
    """Duplicate ids, cancels before / during / after their request or for no request, requests
    without ids, notifications with ids: every request message gets exactly one response (a
    result, -32800 if it was cancelled, -32600 if its id was still in use, -32601 for a
    notification method), nothing answers a notification, and no cancelled work keeps running."""
    prefix = fz.new_id()
    e = Expect()
    for kind, _, k, _ in ops:
        if kind == "request":
            e.want(f"{prefix}-{k}", {RESULT, -32800, -32600})
        elif kind == "notification-with-id":
            e.want(f"{prefix}-{k}", {-32601})

    async def burst() -> None:
        send = fz.raw.send
        for kind, method, k, n in ops:
            msg_id = f"{prefix}-{k}"
            if kind == "request":
                params = _valid_params(method, n)
                send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
            elif kind == "cancel":
                send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": msg_id}})
            elif kind == "no-id":
                send({"jsonrpc": "2.0", "method": method, "params": _valid_params(method, n)})
            elif kind == "notification-with-id":
                params = {"id": "nobody"} if method == "$/cancelRequest" else {}
                send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
            else:
                await asyncio.sleep(n / 1000)

    generations = fz.stats()["local"]
    fz.exchange(burst, e)
    fz.wait_idle()
    # requests without an id ran nothing: generations grew by at most the requests with ids
    after = fz.stats()["local"]
    grew = sum(
        after[s]["generations"] - generations.get(s, {"generations": 0})["generations"]
        for s in after
    )
    with_ids = sum(
        1
        for kind, method, _, _ in ops
        if kind == "request"
        and method in ("mlxd/chat", "mlxd/complete", "textDocument/inlineCompletion")
    )
    assert grew <= with_ids, (grew, with_ids, ops)


def test_cancel_out_of_order_each_request_answered_once(fz: Fuzzer) -> None:
    """A cancel before its request does nothing (the request is served); twice during it gives
    one -32800; after the answer, nothing more."""
    early, during, late = fz.new_id(), fz.new_id(), fz.new_id()

    def cancel(msg_id: str) -> bytes:
        return frame({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": msg_id}})

    e = Expect()
    e.want(early, RESULT)
    fz.exchange(cancel(early) + fz.request(early, "mlxd/chat", _valid_params("mlxd/chat", 2)), e)

    async def cancel_twice_mid_way() -> None:
        params = {**_valid_params("mlxd/chat", 100_000), "partialResultToken": during}
        fz.raw.send({"jsonrpc": "2.0", "id": during, "method": "mlxd/chat", "params": params})
        while not any(
            f.get("method") == "$/progress" and f["params"]["token"] == during
            for f in fz.raw.frames
        ):
            await asyncio.sleep(0.002)
        fz.raw.send_bytes(cancel(during) + cancel(during))

    e = Expect()
    e.want(during, -32800)
    fz.exchange(cancel_twice_mid_way, e)
    fz.wait_idle()

    e = Expect()
    e.want(late, RESULT)
    fz.exchange(fz.request(late, "mlxd/models", {}), e)
    fz.exchange(cancel(late) + cancel(late), Expect())


def test_the_daemon_is_still_whole_after_the_fuzz(fz: Fuzzer) -> None:
    """After everything above: a real generation, streamed; memory not run away."""
    msg_id = fz.new_id()
    e = Expect()
    e.want(msg_id, RESULT)
    params = {
        "messages": [{"role": "user", "content": "still there?"}],
        "maxTokens": 4,
        "partialResultToken": msg_id,
    }
    new = fz.exchange(fz.request(msg_id, "mlxd/chat", params), e)
    (answer,) = [f for f in new if f.get("id") == msg_id]
    deltas = [
        f["params"]["value"]["delta"]
        for f in new
        if f.get("method") == "$/progress" and f["params"]["token"] == msg_id
    ]
    assert "".join(deltas) == answer["result"]["text"]
    assert rss_kb(fz.raw.proc.pid) < 1_500_000
