"""taint.py, the rule behind issue #15 case 2: a conversation that carried an excluded
document is routed as if it named that document, for its whole life."""

from __future__ import annotations

from mlxd import taint
from mlxd.types import Message, Request

ENV = "file:///p/.env"


def excluded(uri: str) -> bool:
    return uri.endswith(".env")


def chat(*messages: tuple[str, str]) -> Request:
    return Request(kind="chat", messages=[Message(r, c) for r, c in messages])


def test_a_follow_up_holding_a_remembered_message_is_routed_by_the_excluded_document():
    c = taint.Conversations()
    first = ("user", "Explain:\nAPI_TOKEN=sk-live-5f2c9a8e7d6b")
    docs, tainted = c.route(chat(("system", "You are helpful."), first), [ENV], [], excluded)
    assert tainted == ENV
    c.remember(["The file sets one token for the API."], ENV)  # the answer
    docs, tainted = c.route(chat(first, ("user", "And then?")), [], [], excluded)
    assert docs == [ENV] and tainted == ENV
    # the answer alone (first message scrolled away) still marks the conversation
    follow = chat(("assistant", "The file sets one token for the API."), ("user", "why?"))
    assert c.route(follow, [], [], excluded)[1] == ENV


def test_system_prompts_and_short_messages_taint_nothing():
    c = taint.Conversations()
    c.route(chat(("system", "You are a helpful assistant."), ("user", "ok")), [ENV], [], excluded)
    other = chat(("system", "You are a helpful assistant."), ("user", "ok"))
    assert c.route(other, [], [], excluded) == ([], None)


def test_quoting_a_line_of_an_open_excluded_document_counts_as_naming_it():
    open_docs = [(ENV, "API_TOKEN=sk-live-5f2c9a8e7d6b\nX=1\n"), ("file:///p/a.py", "x = 1\n")]
    quoted = chat(("user", "is API_TOKEN=sk-live-5f2c9a8e7d6b fine?"))
    assert taint.quotes([m.content for m in quoted.messages], open_docs, excluded) == ENV
    short = ["X=1 is set"]  # a line too short to say anything
    assert taint.quotes(short, open_docs, excluded) is None


def test_memory_is_bounded():
    c = taint.Conversations()
    for i in range(taint.MAX_REMEMBERED + 10):
        c.remember([f"message number {i:08d}"], ENV)
    assert c.carried(["message number 00000000"]) is None
    assert c.carried([f"message number {taint.MAX_REMEMBERED + 9:08d}"]) == ENV
