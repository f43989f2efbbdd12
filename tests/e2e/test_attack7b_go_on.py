"""Attacks on the next suggestion written by the shown line's own generation going on
(types.GoOn, backends/go_on.py, inline/nexts.py; issue #17), real daemon over stdio with tiny
models that write a known text (make_tiny_model's `script`).

The oracle is the daemon without the work ahead (`inline.background = false`): what it shows at
a position, and what it shows after the user accepted that (a fresh generation there), is what
the daemon with the generation going on must show too: the same shown item, and a next item
equal to the one a fresh request at the accepted state gets.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import end_of, insert, stats, until
from tests.kit import private_runtime

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

LINE, NEXT = " b)", "bar += 2"
EMOJI = ' "😀")'  # four byte tokens for one code point, two UTF-16 units


@pytest.fixture(scope="module")
def two_lines_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlxd.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("attack7b-two-lines") / "model"
    return make_tiny_model(path, script="," + LINE + "\n" + NEXT)


def config(tmp_path: Path, model: Path, background: bool, multi_line: str = "auto") -> Path:
    flag = "true" if background else "false"
    return write_config(
        tmp_path / f"attack7b-{flag}.toml",
        f'[local]\nmodel = "{model}"\n[inline]\nmax_ms = 20000\nbackground = {flag}\n'
        f'multi_line = "{multi_line}"\n',
    )


# (document, cursor line, cursor character): the cursor right after "," each time.
CASES = [
    ("print(a,", 0, 8),  # the end of the document
    ("print(a,\nz = 1", 0, 8),  # a line below
    ("print(a,\r\nz = 1\r\n", 0, 8),  # CRLF
    ("x = 1\nprint(a,", 1, 8),  # the last line, not the first
    ("print(a,)\nz = 1", 0, 8),  # mid-line: the rest of the line is ")"
]
EMOJI_CASES = [("s = 'é'\nprint(a,", 1, 8), ("s = '😀'\r\nprint(a,\r\nz = 1", 1, 8)]
BLOCK_CASES = [
    ("def f(a, b):", 0, 12),
    ("def f(a, b):\n\nz = 2", 0, 12),
    ("def f(a, b):\r\nz = 2\r\n", 0, 12),
    ("y = 0\ndef f(a, b):", 1, 12),
]
# model fixture name -> (script, cases)
SCRIPTS = {
    "two_lines": ("," + LINE + "\n" + NEXT, CASES),
    "emoji": ("," + EMOJI + "\n" + NEXT, EMOJI_CASES),
    "eos_after_newline": ("," + LINE + "\n", CASES),
    "eos_at_line_end": ("," + LINE, CASES),
    "crlf_written": ("," + LINE + "\r\n" + NEXT, CASES),
    "lone_cr_written": ("," + LINE + "\r" + NEXT, CASES),
    "suffix_repeated": ("," + LINE + "\n" + NEXT, [("print(a,\nbar += 2\n", 0, 8)]),
    "block_of_one_line": ("):\n    return b\nx = 1", BLOCK_CASES),
    "block_of_two_lines": ("):\n    if a:\n        return b\nx = 1", BLOCK_CASES),
}


@pytest.fixture(scope="module", params=list(SCRIPTS))
def scripted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlxd.models.tiny import make_tiny_model

    script, cases = SCRIPTS[request.param]
    path = tmp_path_factory.mktemp(f"attack7b-{request.param}") / "model"
    return request.param, make_tiny_model(path, script=script), cases


async def shown_then_next(
    s: Any, doc: str, line: int, char: int, uri: str, rounds: int = 3
) -> list[list[str]]:
    """What is shown at (line, char), then after the user accepted it, `rounds` times."""
    open_doc(s, doc, uri=uri)
    out: list[list[str]] = []
    for version in range(2, 2 + rounds):
        items = [i.insert_text for i in (await inline(s, line, char, kind=2, uri=uri)).items]
        out.append(items)
        await until(s, lambda st: st["inline"]["aheadActive"] == 0)  # the work ahead is done
        if not items:
            break
        insert(s, version, line, char, items[0], uri=uri)  # the user accepts it
        line, char = end_of(line, char, items[0])
    return out


async def run_all(cfg: Path, cases: list[tuple[str, int, int]]) -> tuple[list[Any], Any]:
    out = []
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        for n, (doc, line, char) in enumerate(cases):
            out.append(await shown_then_next(s, doc, line, char, f"file:///w/p/c{n}.py"))
        st = await stats(s)
    return out, st


@pytest.mark.parametrize("multi_line", ["auto", "never", "always"])
async def test_shown_and_next_items_are_those_of_fresh_generations(
    tmp_path: Path, scripted: Any, multi_line: str
) -> None:
    name, model, cases = scripted
    if multi_line != "auto" and name not in ("two_lines", "block_of_two_lines"):
        pytest.skip("multi_line modes: one line script and one block script are enough")
    want, _ = await run_all(config(tmp_path, model, False, multi_line), cases)
    got, st = await run_all(config(tmp_path, model, True, multi_line), cases)
    for case, w, g in zip(cases, want, got, strict=True):
        if name.startswith("block") or multi_line == "always":  # a line at a time: the text
            w, g = "".join(r[0] for r in w if r), "".join(r[0] for r in g if r)  # accepted
        assert g == w, f"{case!r}: with the generation going on {g!r}, fresh {w!r}"
    i = st["inline"]
    if name in ("two_lines", "emoji", "block_of_two_lines", "crlf_written"):
        # A next line was shown: as the next item, or (multi-line) within the block shown,
        # written by its first line's generation going on (the request shows what of the block
        # is written by its bound).
        nexts = (len(r) > 1 and r[1] or (r and r[0] and "\n" in r[0][0].strip()) for r in got)
        assert any(nexts), got
        assert i["aheadContinued"] >= 1, i  # the going-on path was exercised
    # aheadContinued also counts a block's second line (a rest job's, not a next job's)
    assert i["aheadStarted"] >= i["aheadStored"], i
    assert i["aheadContinued"] <= i["aheadStored"] + i["restStarted"], i


# A long next line of distinct tokens, and a slower model: the generation going on after the
# shown line is still running when the user accepts it (the join path of inline/ahead.py).
LONG = (
    "x total = alpha + * - eps or not in is if for while return yield None True self cls def "
    "class import from with as try except raise pass continue print len range dict set str int"
)
MAX_MS = 8000


@pytest.fixture(scope="module")
def slow_script_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlxd.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("attack7b-slow") / "model"
    return make_tiny_model(
        path, layers=8, hidden=512, intermediate=1024, script="," + LINE + "\n" + LONG
    )


# For the bound's test: a line of 1.7x LONG's tokens on a model of 12 wider layers
# (2-3x the time a token): it takes over 0.9 s even on CI's faster machine (~9 ms a token on
# the 8-layer model, 13-14 here), so both bounds tested cut it.
LONGER = LONG + (
    " aiter all and any assert callable chr compile credits elif filter float globals hash help"
    " map memoryview min next object"
)  # 105 tokens with the line before, each distinct (a script's must be)


@pytest.fixture(scope="module")
def slower_script_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlxd.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("attack7b-slower") / "model"
    return make_tiny_model(
        path, layers=12, hidden=640, intermediate=1536, script="," + LINE + "\n" + LONGER
    )


def slow_config(tmp_path: Path, model: Path) -> Path:
    return write_config(
        tmp_path / "attack7b-slow.toml",
        f'[local]\nmodel = "{model}"\n[inline]\nmax_ms = {MAX_MS}\nmax_tokens = 128\n',
    )


def params(uri: str, line: int, char: int) -> T.InlineCompletionParams:
    return T.InlineCompletionParams(
        text_document=T.TextDocumentIdentifier(uri),
        position=T.Position(line, char),
        context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind(2)),
    )


URI, OTHER = "file:///w/p/a.py", "file:///w/p/b.py"


async def accepted_and_joined(s: Any) -> tuple[str, asyncio.Future[Any], float]:
    """The line shown at once, accepted at once, and the request after it started while the
    line's generation goes on: (its id, its future, when it was sent)."""
    open_doc(s, "print(a,", uri=URI)
    open_doc(s, "x = 1\ny =", uri=OTHER)
    first = await inline(s, 0, 8, kind=2, uri=URI)
    assert [i.insert_text for i in first.items] == [LINE]
    insert(s, 2, 0, 8, LINE, uri=URI)
    sent = time.monotonic()
    msg_id, fut = s.start(T.TEXT_DOCUMENT_INLINE_COMPLETION, params(URI, 0, 8 + len(LINE)))
    await until(s, lambda st: st["inline"]["aheadJoined"] == 1)
    return msg_id, fut, sent


async def test_a_request_joining_the_generation_going_on_gets_its_line_once_in_time(
    tmp_path: Path, slow_script_model: Path
) -> None:
    async with daemon(slow_config(tmp_path, slow_script_model)) as s:
        await s.wait_status("ready")
        _, fut, sent = await accepted_and_joined(s)
        result = await asyncio.wait_for(fut, 60)
        took = time.monotonic() - sent
        st = (await stats(s))["inline"]
    items = [i.insert_text for i in result.items]
    assert items in ([], ["\n" + LONG]), items  # the whole next line or nothing, no fragment
    assert took * 1000 <= MAX_MS + 500, took
    assert st["errors"] == 0 and st["cancelled"] == 0, st


async def test_a_cancelled_joining_request_is_acknowledged_and_the_next_one_served(
    tmp_path: Path, slow_script_model: Path
) -> None:
    async with daemon(slow_config(tmp_path, slow_script_model)) as s:
        await s.wait_status("ready")
        msg_id, fut, _ = await accepted_and_joined(s)
        s.cancel(msg_id)
        with pytest.raises(JsonRpcException) as err:
            await asyncio.wait_for(fut, 30)
        assert err.value.code == -32800
        again = await asyncio.wait_for(inline(s, 0, 8 + len(LINE), kind=2, uri=URI), 60)
    assert [i.insert_text for i in again.items] in ([], ["\n" + LONG])


@pytest.mark.parametrize("stopped_by", ["close", "request elsewhere", "newer request here"])
async def test_a_joining_request_is_answered_when_the_going_on_is_stopped(
    tmp_path: Path, slow_script_model: Path, stopped_by: str
) -> None:
    async with daemon(slow_config(tmp_path, slow_script_model)) as s:
        await s.wait_status("ready")
        _, fut, _ = await accepted_and_joined(s)
        if stopped_by == "close":
            s.client.text_document_did_close(
                T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(URI))
            )
        elif stopped_by == "request elsewhere":
            await inline(s, 1, 3, kind=2, uri=OTHER)
        else:
            await inline(s, 0, 3, kind=2, uri=URI)
        result = await asyncio.wait_for(fut, 60)  # not -32800: nobody cancelled it
        assert isinstance(result, T.InlineCompletionList)
        items = [i.insert_text for i in result.items]
        if stopped_by != "request elsewhere":
            assert items == []
        else:
            assert items in ([], ["\n" + LONG]), items
        st = (await stats(s))["inline"]
    assert st["errors"] == 0, st


# Edits after the line was shown, each then asked at: (op, ...) steps, "ask" records the items.
DOC = "print(a,\nz = 1"
FLOWS: dict[str, list[tuple[Any, ...]]] = {
    "word, then the rest": [
        ("ask", 0, 8),
        ("ins", 0, 8, " b"),
        ("ask", 0, 10),
        ("ins", 0, 10, ")"),
        ("ask", 0, 11),
    ],
    "typed something else": [("ask", 0, 8), ("ins", 0, 8, " c)"), ("ask", 0, 11)],
    "typed it, then a newline": [("ask", 0, 8), ("ins", 0, 8, " b)\n"), ("ask", 1, 0)],
    "accepted, undone, asked again": [
        ("ask", 0, 8),
        ("ins", 0, 8, " b)"),
        ("del", 0, 8, 0, 11),
        ("ask", 0, 8),
        ("ins", 0, 8, " b)"),
        ("ask", 0, 11),
    ],
    "accepted, an edit above": [
        ("ask", 0, 8),
        ("ins", 0, 8, " b)"),
        ("ins", 0, 0, "#\n"),
        ("ask", 1, 11),
    ],
    "accepted, closed, reopened": [
        ("ask", 0, 8),
        ("close",),
        ("open", "print(a, b)\nz = 1"),
        ("ask", 0, 11),
    ],
    "accepted, an edit below": [
        ("ask", 0, 8),
        ("ins", 0, 8, " b)"),
        ("ins", 1, 5, "0"),
        ("ask", 0, 11),
    ],
}


async def play(s: Any, uri: str, steps: list[tuple[Any, ...]]) -> list[list[str]]:
    open_doc(s, DOC, uri=uri)
    version, out = 1, []
    for op, *args in steps:
        if op == "ask":
            result = await inline(s, args[0], args[1], kind=2, uri=uri)
            out.append([i.insert_text for i in result.items])
        elif op in ("ins", "del"):
            version += 1
            start = T.Position(args[0], args[1])
            end = start if op == "ins" else T.Position(args[2], args[3])
            text = args[2] if op == "ins" else ""
            s.client.text_document_did_change(
                T.DidChangeTextDocumentParams(
                    text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        T.TextDocumentContentChangePartial(range=T.Range(start, end), text=text)
                    ],
                )
            )
        elif op == "close":
            s.client.text_document_did_close(
                T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri))
            )
        else:
            version = 1
            open_doc(s, args[0], uri=uri)
    await until(s, lambda st: st["inline"]["aheadActive"] == 0)
    return out


async def play_all(cfg: Path) -> dict[str, list[list[str]]]:
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        return {
            name: await play(s, f"file:///w/p/f{n}.py", steps)
            for n, (name, steps) in enumerate(FLOWS.items())
        }


async def test_after_edits_what_is_shown_is_what_a_fresh_generation_shows(
    tmp_path: Path, two_lines_model: Path
) -> None:
    want = await play_all(config(tmp_path, two_lines_model, background=False))
    got = await play_all(config(tmp_path, two_lines_model, background=True))
    for name in FLOWS:
        assert got[name] == want[name], f"{name}: {got[name]!r}, fresh {want[name]!r}"


@pytest.mark.serial  # asserts the bound (late), and the line must be longer than it
@pytest.mark.parametrize("max_ms", [400, 900])
async def test_requests_after_the_accept_are_answered_within_max_ms(
    tmp_path: Path, slower_script_model: Path, max_ms: int
) -> None:
    """The next line is longer than a tight inline.max_ms allows: the request that accepted the
    shown line waits for it within its own bound, and so do the ones after it (asking again,
    typing along), each answered once by max_ms (the daemon's own measure: slowestMs, late)."""
    cfg = write_config(
        tmp_path / "tight.toml",
        f'[local]\nmodel = "{slower_script_model}"\n[inline]\nmax_ms = {max_ms}\n'
        "max_tokens = 128\n",
    )
    seen = []
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, "print(a,", uri=URI)
        await inline(s, 0, 8, kind=2, uri=URI)  # a cold first one (loads, first prefill)
        s.client.text_document_did_close(
            T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(URI))
        )
        st0 = (await stats(s))["inline"]
        open_doc(s, "print(a,", uri=URI)
        first = await inline(s, 0, 8, kind=2, uri=URI)
        seen.append([i.insert_text for i in first.items])
        assert seen[0] == [LINE]
        insert(s, 2, 0, 8, LINE, uri=URI)
        for _ in range(3):  # the accept's request, then asking again at the same place
            r = await inline(s, 0, 8 + len(LINE), kind=2, uri=URI)
            seen.append([i.insert_text for i in r.items])
        await until(s, lambda st: st["inline"]["aheadActive"] == 0)
        st = (await stats(s))["inline"]
        failed = [m for m in s.logs if "fail" in m or "rror" in m]  # why, if any
    assert seen[1] == [], seen  # the premise: the line is longer than the bound
    for items in seen[2:]:
        assert items in ([], ["\n" + LONGER]), seen
    assert st["late"] == st0["late"], (st0, st)
    assert st["errors"] == 0 and st["cancelled"] == 0, (st, failed)


@pytest.mark.parametrize("shared", [False, True])
async def test_another_windows_request_does_not_wait_for_the_generation_going_on(
    tmp_path: Path, slow_script_model: Path, shared: bool
) -> None:
    """Window A's shown line goes on in the background; window B (another editor on the same
    shared daemon and model, or the same window in another document) asks meanwhile: B is
    answered while A's generation still goes on (it did not wait for its end), with B's line."""
    cfg = slow_config(tmp_path, slow_script_model)
    with private_runtime("mlxd-rt-a7b-", strict=False) as rt:
        env = {"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": str(rt)} if shared else {}
        async with daemon(cfg, env=env) as a, daemon(cfg, env=env) as b:
            await a.wait_status("ready")
            await b.wait_status("ready")
            b_uri = "file:///w/p/b.py" if shared else OTHER
            w = b if shared else a
            open_doc(w, "print(c,", uri=b_uri)
            assert [i.insert_text for i in (await inline(w, 0, 8, kind=2, uri=b_uri)).items] == [
                LINE
            ]  # warm: B's prompt and the model are loaded
            open_doc(a, "print(a,", uri=URI)
            shown = await inline(a, 0, 8, kind=2, uri=URI)
            assert [i.insert_text for i in shown.items] == [LINE]
            going = (await stats(a))["inline"]["aheadActive"]
            w.client.text_document_did_change(
                T.DidChangeTextDocumentParams(
                    text_document=T.VersionedTextDocumentIdentifier(uri=b_uri, version=2),
                    content_changes=[T.TextDocumentContentChangeWholeDocument("x = 0\nprint(c,")],
                )
            )
            got = await inline(w, 1, 8, kind=2, uri=b_uri)
            still = (await stats(a))["inline"]["aheadActive"]
            st_b = (await stats(w))["inline"]
    assert [i.insert_text for i in got.items] == [LINE]
    assert going == 1  # A's generation was going on when B asked
    if shared:
        assert still == 1, "B was answered only after A's generation going on had ended"
    assert st_b["late"] == 0 and st_b["errors"] == 0, st_b


@pytest.mark.parametrize("pace", [0.0, 0.5, 1.0, 2.0])
async def test_a_burst_of_requests_and_edits_while_lines_go_on_is_answered_once_each(
    tmp_path: Path, slow_script_model: Path, pace: float
) -> None:
    """Accept, ask, type along, move elsewhere, cancel, in quick succession while shown lines'
    generations go on: every request is answered exactly once (no -32800 but for the ones
    cancelled), no error, nothing logged as an error, and nothing but whole lines is shown."""
    async with daemon(slow_config(tmp_path, slow_script_model)) as s:
        await s.wait_status("ready")
        version, text = 1, "print(a,"
        open_doc(s, text, uri=URI)
        open_doc(s, "x = 1\ny =", uri=OTHER)
        futures: list[tuple[str, asyncio.Future[Any], bool]] = []
        others: list[tuple[str, asyncio.Future[Any]]] = []  # requests in the other document
        for n in range(12):
            msg_id, fut = s.start(T.TEXT_DOCUMENT_INLINE_COMPLETION, params(URI, 0, 8))
            cancel = n % 4 == 3
            if cancel:
                s.cancel(msg_id)
            futures.append((msg_id, fut, cancel))
            if n % 3 == 0:
                await asyncio.sleep(0.05 * pace)
                version += 1
                insert(s, version, 0, 8, LINE, uri=URI)
                m, f = s.start(T.TEXT_DOCUMENT_INLINE_COMPLETION, params(URI, 0, 8 + len(LINE)))
                futures.append((m, f, False))
                await asyncio.sleep(0.02 * n * pace)
                version += 1
                s.client.text_document_did_change(
                    T.DidChangeTextDocumentParams(
                        text_document=T.VersionedTextDocumentIdentifier(uri=URI, version=version),
                        content_changes=[T.TextDocumentContentChangeWholeDocument(text)],
                    )
                )
            elif n % 3 == 1:
                others.append(s.start(T.TEXT_DOCUMENT_INLINE_COMPLETION, params(OTHER, 1, 3)))
            else:
                await asyncio.sleep(0.1 * pace)
        shown = []
        for msg_id, fut, cancel in futures:
            try:
                result = await asyncio.wait_for(fut, 60)
            except JsonRpcException as exc:
                assert cancel and exc.code == -32800, (msg_id, exc)
                continue
            shown += [i.insert_text for i in result.items]
        # nobody cancelled these: each is answered (no -32800)
        failed = {}
        for msg_id, fut in others:
            try:
                await asyncio.wait_for(fut, 60)
            except JsonRpcException as exc:
                failed[msg_id] = (exc.code, str(exc))
        await until(s, lambda st: st["inline"]["aheadActive"] == 0)
        st = (await stats(s))["inline"]
        logged = [m.message for m in s.messages if "rror" in m.message or "Traceback" in m.message]
    # the whole shown line, or the whole next line: never a cut or mixed text
    assert set(shown) <= {LINE, "\n" + LONG}, shown
    assert st["errors"] == 0, st
    assert not logged, logged
    assert not failed, failed


async def test_a_chat_does_not_wait_for_the_generation_going_on(
    tmp_path: Path, slow_script_model: Path
) -> None:
    """A chat on the same local model while the shown line's generation goes on at background
    priority: the chat is answered while that generation still goes on (it ran first)."""
    from tests.conftest import chat_params

    async with daemon(slow_config(tmp_path, slow_script_model)) as s:
        await s.wait_status("ready")
        await s.request("mlxd/chat", chat_params("warm", maxTokens=2))  # the chat's prompt path
        open_doc(s, "print(a,", uri=URI)
        shown = await inline(s, 0, 8, kind=2, uri=URI)
        assert [i.insert_text for i in shown.items] == [LINE]
        going = (await stats(s))["inline"]["aheadActive"]
        r = await s.request("mlxd/chat", chat_params("hello", maxTokens=3))
        still = (await stats(s))["inline"]["aheadActive"]
        done = await until(s, lambda st: st["inline"]["aheadActive"] == 0)
    assert r.backend == "local"
    assert going == 1
    assert still == 1, "the chat was answered only after the generation going on had ended"
    assert done["inline"]["aheadContinued"] == 1, done["inline"]  # and it went on after


async def test_a_cloud_answer_to_a_local_first_request_never_goes_on_to_the_cloud(
    tmp_path: Path,
) -> None:
    """routing.inline local first, the local model broken (no weights): the request (made
    with a GoOn, local first) is answered by the cloud, cut at its line end; nothing goes on
    and nothing is sent to the cloud in the background, after it or after the accept."""
    from tests.fakes.providers import FakeProvider, Reply

    broken = tmp_path / "no-model"
    broken.mkdir()
    key = "sk-a7b-0123456789abcdef"
    async with FakeProvider(require_key=key) as fake:
        fake.default = Reply.text([LINE + "\n" + NEXT + "\nmore = 3"])
        cfg = write_config(
            tmp_path / "cloud.toml",
            f'[local]\nmodel = "{broken}"\npreload = false\n'
            f'[backends.cloud]\nprotocol = "openai"\nbase_url = "{fake.openai_url}"\n'
            'api_key_env = "A7B_KEY"\nmodel = "gpt-test"\n'
            '[routing]\ncloud = true\ninline = ["local", "cloud"]\n'
            "[inline]\nmax_ms = 20000\n",
        )
        async with daemon(cfg, env={"A7B_KEY": key}) as s:
            open_doc(s, "print(a,", uri=URI)
            first = await inline(s, 0, 8, kind=2, uri=URI)
            assert [i.insert_text for i in first.items] == [LINE]
            count = fake.request_count
            await asyncio.sleep(1.5)  # background work would have started by now
            idle = fake.request_count
            insert(s, 2, 0, 8, LINE, uri=URI)
            await inline(s, 0, 8 + len(LINE), kind=2, uri=URI)
            await asyncio.sleep(1.5)
            st = (await stats(s))["inline"]
        after = fake.request_count
    assert count == 1 and idle == 1, (count, idle)
    assert after == 2, after  # the accept's own request only
    assert st["aheadStarted"] == 0 and st["aheadContinued"] == 0, st
