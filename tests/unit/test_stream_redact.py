"""Issue #15 attack F3: a key echoed as model output is redacted from the stream and the
result, whole or split across chunks, and the deltas still add up to the final text. Local
generation is never held back (nor is anything while no secret is known)."""

from __future__ import annotations

import asyncio

import pytest

from mlxd.errors import StreamCut
from mlxd.router import Router
from mlxd.secrets import KeyStore
from mlxd.stream_redact import StreamRedactor
from mlxd.types import Delta, Request
from tests.unit.test_router_unit import Scripted, answer, make_router

KEY = "sk-attack+15/Zq9xW3vT7rK2mN8pL4=="
TEXT = f"Your key: {KEY} and again {KEY[:20]}{KEY[20:]} ok"

pytestmark = pytest.mark.timeout(30)


def store(*keys: str) -> KeyStore:
    s = KeyStore()
    for k in keys:
        s.set("b", k)
    return s


def run_pieces(redactor: StreamRedactor, pieces: list[str]) -> list[str]:
    return [redactor.feed(p) for p in pieces] + [redactor.flush()]


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_a_key_split_at_any_point_is_redacted_and_pieces_add_up(cut):
    keys = store(KEY)
    out = run_pieces(StreamRedactor(keys), [TEXT[:cut], TEXT[cut:]])
    assert "".join(out) == keys.redact(TEXT) == "Your key: [REDACTED] and again [REDACTED] ok"
    assert not any(KEY[:8] in p or KEY[-8:] in p for p in out)


def test_one_character_at_a_time_with_two_keys():
    keys = store(KEY, "other-secret-0123")
    text = f"a {KEY}other-secret-0123 b other-secret-0123{KEY[:9]}"
    out = run_pieces(StreamRedactor(keys), list(text))
    # the last key is cut off by the end of the stream: its start is redacted too
    assert "".join(out) == "a [REDACTED][REDACTED] b [REDACTED][REDACTED]"


def test_nothing_is_held_back_while_no_secret_is_known():
    r = StreamRedactor(KeyStore())
    assert [r.feed("ab"), r.feed("cd")] == ["ab", "cd"] and r.flush() == ""


def test_only_what_could_start_a_secret_is_held_back():
    keys = store(KEY)
    r = StreamRedactor(keys)
    assert r.feed("Hello, world") == "Hello, world" and r.held == ""
    assert r.feed(" here: sk-att") == " here: " and r.held == "sk-att"
    assert r.feed("ention please") == "sk-attention please"  # not a key after all
    assert r.feed(KEY[:-1]) == "" and r.held == KEY[:-1]
    assert r.feed(KEY[-1]) == "[REDACTED]"
    assert r.flush() == ""


def router(*backends: Scripted, keys: KeyStore) -> Router:
    r = make_router(*backends)
    r.secrets = keys
    return r


def chat() -> Request:
    from mlxd.types import Message

    return Request(kind="chat", messages=[Message("user", "hi")])


async def test_a_cloud_answer_echoing_a_key_is_redacted_in_deltas_and_result():
    cloud = Scripted("cloud", answer("Your key: ", KEY[:9], KEY[9:], " ok"))
    deltas: list[str] = []
    out = await router(cloud, keys=store(KEY)).run(chat(), on_delta=lambda t, _: deltas.append(t))
    assert out.text == "Your key: [REDACTED] ok" == "".join(deltas)


async def test_local_generation_is_not_held_back():
    """Each local delta reaches the client before the backend yields the next one."""
    gate = asyncio.Event()
    local = Scripted("local", [Delta("first "), gate, Delta("second"), *answer()[-1:]])
    local.is_local = True
    deltas: list[str] = []

    def on_delta(text: str, _: str) -> None:
        deltas.append(text)
        gate.set()

    out = await router(local, keys=store(KEY)).run(chat(), on_delta=on_delta)
    assert deltas == ["first ", "second"] and out.text == "first second"


async def test_a_local_continuation_of_a_cloud_answer_cut_inside_a_key_is_redacted():
    cloud = Scripted("cloud", [Delta("Your key: " + KEY[:12]), StreamCut("cut")])
    local = Scripted("local", answer(KEY[12:], " ok"))
    local.is_local = True
    deltas: list[str] = []
    out = await router(cloud, local, keys=store(KEY)).run(
        chat(), on_delta=lambda t, _: deltas.append(t)
    )
    assert out.text == "Your key: [REDACTED] ok" == "".join(deltas)
    assert local.requests[0].assistant_prefix == "Your key: " + KEY[:12]  # local: as generated


async def test_a_cloud_continuation_gets_the_cut_answer_redacted():
    first = Scripted("first", [Delta("Your key: " + KEY[:12]), StreamCut("cut")])
    second = Scripted("second", answer(" and more"))
    deltas: list[str] = []
    out = await router(first, second, keys=store(KEY)).run(
        chat(), on_delta=lambda t, _: deltas.append(t)
    )
    assert out.text == "Your key: [REDACTED] and more" == "".join(deltas)
    assert KEY[:8] not in second.requests[0].assistant_prefix
    assert out.attempts[0].error.endswith(f"after {len('Your key: ' + KEY[:12])} chars streamed")
