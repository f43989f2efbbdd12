"""taint.py, the rule behind issue #15 case 2: a conversation that carried an excluded
document is routed as if it named that document, for its whole life."""

from __future__ import annotations

import pytest

from mlxd import taint, uris
from mlxd.router import privacy
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


def test_a_resent_message_matches_whatever_its_whitespace():
    """A client may resend a message with CRLF line ends, tabs, or re-flowed spacing."""
    c = taint.Conversations()
    first = "Explain this file:\nAPI_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2\n"
    c.remember([first], ENV)
    for resent in (
        first.replace("\n", "\r\n"),
        first.replace("\n", "\r"),
        first.replace(" ", "\t"),
        first.replace(" ", "   ").replace("\n", " \n\n "),
    ):
        assert c.carried([resent]) == ENV, repr(resent)
    assert c.carried([first.replace("API", "APX")]) is None  # a different message


def test_every_line_of_an_open_excluded_document_counts_however_deep_or_respaced():
    padding = "".join(f"# padding line number {n:05d}\n" for n in range(50_000))
    secret = "PRIVATE_SIGNING_KEY =\tdeep-secret-0123456789"
    open_docs = [(ENV, padding + secret + "\n" + padding)]
    for text in (
        "Is this ok? " + secret + " thanks",
        "Is this ok?\r\n" + secret.replace("\t", "    ").replace(" =", "   =") + "\r\n",
    ):
        assert taint.quotes([text], open_docs, excluded) == ENV, text
    assert taint.quotes(["PRIVATE_SIGNING_KEY = other-value"], open_docs, excluded) is None
    # the last line of a document, the first, and a line quoted across two messages' joint
    assert taint.quotes(["x # padding line number 49999"], open_docs, excluded) == ENV
    assert taint.quotes(["# padding line", "number 00000 y"], open_docs, excluded) == ENV


def test_system_messages_are_read_by_both_rules():
    c = taint.Conversations()
    first = "Explain:\nAPI_TOKEN=sk-live-5f2c9a8e7d6b"
    c.route(chat(("system", "You are a helpful assistant."), ("user", first)), [ENV], [], excluded)
    # a remembered message moved into the system role still carries the taint
    folded = chat(("system", "Earlier: " + first), ("system", first), ("user", "Summarise"))
    assert c.route(folded, [], [], excluded) == ([ENV], ENV)
    # a system message quoting an open excluded document counts as naming it ...
    open_docs = [(ENV, "DB_PASSWORD=hunter2-but-longer\n")]
    quoting = chat(("system", "Context:\nDB_PASSWORD=hunter2-but-longer"), ("user", "Unused?"))
    assert c.route(quoting, [], open_docs, excluded) == ([ENV], ENV)
    # ... and is remembered: resent once the document is closed, it still stays local
    assert c.route(quoting, [], [], excluded) == ([ENV], ENV)
    # a fixed system prompt that travelled with the excluded document taints nothing
    assert c.route(
        chat(("system", "You are a helpful assistant."), ("user", "hi")), [], [], excluded
    ) == ([], None)


def test_a_recovered_session_keeps_follow_ups_from_before_the_restart_local():
    # A shared daemon took the window over after its predecessor died (attack #19, 1b): it
    # never saw the conversations, so one that may have carried `.env` must not go out.
    c = taint.Conversations(recovered=True)
    before = chat(("user", "Explain it"), ("assistant", "The file sets one token."), ("user", "?"))
    docs, tainted = c.route(before, [], [], excluded)
    assert tainted == uris.LOCAL_ONLY and docs == [uris.LOCAL_ONLY]
    assert privacy.excluded(uris.LOCAL_ONLY, [])  # every privacy rule reads it as excluded
    # ... and stays so when its first messages scroll away (rule 1 remembers it)
    c.remember(["A new answer about the token file."], tainted)
    later = chat(("assistant", "A new answer about the token file."), ("user", "more?"))
    assert c.route(later, [], [], excluded)[1] == uris.LOCAL_ONLY
    # A conversation begun after the restart is free: its answers are this daemon's own.
    fresh = chat(("user", "What is a closure?"))
    assert c.route(fresh, [], [], excluded) == ([], None)
    c.answered("A closure captures variables.")
    follow = chat(("user", "What is a closure?"), ("assistant", "A closure captures variables."))
    assert c.route(follow, [], [], excluded) == ([], None)


def test_a_session_that_was_not_recovered_routes_unknown_history_as_before():
    c = taint.Conversations()
    before = chat(("user", "Explain it"), ("assistant", "The file sets one token."), ("user", "?"))
    assert c.route(before, [], [], excluded) == ([], None)


# --- rule 2 for inline requests: what a cloud provider would be sent (taint.inline_quotes) ------

LINE = "API_TOKEN=sk-live-1234567890abcdef"
OPEN = [(ENV, f"# creds\n{LINE}\n"), ("file:///p/app.py", f"{LINE}\n")]


def inline_request(prefix: str, suffix: str = "", header: str = "", budget: int = 64) -> Request:
    return Request(
        kind="inline", prefix=prefix, suffix=suffix, header=header, context_tokens=budget
    )


def test_an_inline_quote_in_the_prefix_suffix_or_header_is_found():
    assert taint.inline_quotes(inline_request(f"{LINE}\nx = "), OPEN, excluded) == ENV
    assert taint.inline_quotes(inline_request("x = ", f"\n{LINE}\n"), OPEN, excluded) == ENV
    header = f"# from util.py:\n# {LINE}\n# path: app.py\n"
    assert taint.inline_quotes(inline_request("x = ", header=header), OPEN, excluded) == ENV
    # split by the cursor: the provider gets both halves
    cut = len("API_TOKEN=sk-")
    assert taint.inline_quotes(inline_request(LINE[:cut], LINE[cut:]), OPEN, excluded) == ENV


def test_an_inline_quote_beyond_the_budget_is_not_sent_and_does_not_count():
    filler = "".join(f"value_{n:04d} = compute({n})\n" for n in range(200))
    far = inline_request(f"{LINE}\n{filler}x = ", budget=64)
    assert taint.inline_quotes(far, OPEN, excluded) is None
    # the same text, all within a budget that sends it
    assert taint.inline_quotes(inline_request(far.prefix, budget=100_000), OPEN, excluded) == ENV


def test_with_no_open_excluded_document_nothing_is_sized(monkeypatch):
    def sized(request: Request) -> Request:
        raise AssertionError("sized with no open excluded document")

    monkeypatch.setattr(taint, "sized", sized)
    quoting = inline_request(f"{LINE}\nx = ")
    assert taint.inline_quotes(quoting, [("file:///p/app.py", LINE)], excluded) is None
    with pytest.raises(AssertionError, match="sized"):  # and it is what runs when one is open
        taint.inline_quotes(quoting, OPEN, excluded)
