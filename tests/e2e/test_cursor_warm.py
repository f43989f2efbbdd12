"""mlxd/didMoveCursor (issue #16 item 4): where the editor says the cursor rests, the daemon
prefills that prompt in the background, narrow windows first, so that the first request there
is not a cold prefill. Before it, a long document was warmed at its top and end only: a cursor
in its middle paid the whole prefill (the quality bench's mid-file holes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcMethodNotFound

from tests.conftest import Session, daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import URI, config, insert, local_total, stats, until

pytestmark = pytest.mark.timeout(120)

LONG = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(400))  # ~4x the budget
MIDDLE = 600  # a line far from the top window and from the end


def moved(s: Session, line: int, character: int = 0, uri: str = URI) -> None:
    params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
    s.client.protocol.notify("mlxd/didMoveCursor", params)


def reused(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(prompt tokens, of them from the KV cache) of what ran between the two stats."""
    prompt = local_total(after, "promptTokens") - local_total(before, "promptTokens")
    cached = local_total(after, "cachedPromptTokens") - local_total(before, "cachedPromptTokens")
    return prompt, cached


def idle(st: dict[str, Any]) -> bool:
    return st["inline"]["aheadActive"] == 0 and local_total(st, "active") == 0


async def test_the_method_is_advertised(tmp_path, tiny_model) -> None:
    async with daemon(config(tmp_path, tiny_model)) as s:
        assert s.init_result is not None
        assert "mlxd/didMoveCursor" in s.init_result.capabilities.experimental["mlxd"]["methods"]


async def test_a_cursor_that_rests_mid_file_gets_its_suggestion_made_before_it_asks(
    tmp_path, tiny_model
) -> None:
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)  # the user clicked there right after opening
        # A narrow window there, then the suggestion there, from that window's KV cache.
        warm = await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        assert (warm["inline"]["cursorMoves"], warm["inline"]["warmups"]) == (1, 1)
        assert local_total(warm, "generations") == 2
        # (Which window the suggestion's prompt is, the rung or a wider one the time cap
        # allows, is the time fit's choice: tests/unit/test_warm_rungs.py.)
        got = await inline(s, MIDDLE, 0, kind=2)  # e.g. Neovim on InsertEnter
        after = await stats(s)
    assert got.items and got.items[0].insert_text
    assert after["inline"]["aheadHits"] == 1 and after["inline"]["cacheHits"] == 1
    assert after["inline"]["generations"] == 0  # the request itself asked no model


async def test_without_it_the_same_request_is_a_cold_prefill(tmp_path, tiny_model) -> None:
    # The control: the warm-ups after didOpen (top, end) do not reach the middle.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        await until(s, lambda st: st["inline"]["warmups"] == 2)
        warm = await until(s, lambda st: local_total(st, "active") == 0)
        await inline(s, MIDDLE, 0, kind=2)
        prompt, cached = reused(warm, await stats(s))
    assert cached < prompt // 4, (cached, prompt)


async def test_with_background_work_off_a_cursor_is_counted_and_nothing_is_warmed(
    tmp_path, tiny_model
) -> None:
    async with daemon(config(tmp_path, tiny_model, "background = false\n")) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        await inline(s, 3, 0, kind=2)  # answered after the notification was handled
        st = await stats(s)
    assert (st["inline"]["cursorMoves"], st["inline"]["warmups"]) == (1, 0)


async def test_where_the_user_typed_nothing_new_is_prefilled_or_generated(
    tmp_path, tiny_model
) -> None:
    # A cursor notification at the position of a request a moment ago (an editor sends one
    # after each keystroke): the KV cache holds that full window, and each rung is it.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        await inline(s, MIDDLE, 0, kind=2)
        first = await until(s, idle)  # its answer's work ahead done too
        moved(s, MIDDLE, 0)
        await until(s, lambda st: st["inline"]["warmups"] == first["inline"]["warmups"] + 1)
        second = await until(s, idle)
        prompt, cached = reused(first, second)
    assert prompt - cached <= 8, (prompt, cached)
    assert second["inline"]["cursorItems"] == 0  # its suggestion there is cached already


async def test_after_an_edit_warmed_there_the_window_is_not_prefilled_again(
    tmp_path, tiny_model
) -> None:
    # The edit's end is warmed (its full window, no request: nothing else remembers it), then
    # the editor says the cursor rests there: the full window is held; no rung is prefilled.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        insert(s, 2, MIDDLE, 0, "y = 1\n")
        first = await until(s, lambda st: st["inline"]["warmups"] == 1 and idle(st))
        moved(s, MIDDLE + 1, 0)
        second = await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        prompt, cached = reused(first, second)
    assert second["inline"]["warmups"] == 2
    assert prompt - cached <= 2 * 8, (prompt, cached)  # the rung and the suggestion: held


async def test_bad_params_and_unknown_documents_are_dropped_and_the_daemon_serves_on(
    tmp_path, tiny_model
) -> None:
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        for params in (
            {"textDocument": {"uri": URI}},  # no position
            {"textDocument": {"uri": URI}, "position": {"line": -1, "character": 0}},
            {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 0}, "x": 1},
            [],
        ):
            s.client.protocol.notify("mlxd/didMoveCursor", params)
        moved(s, 3, uri="file:///work/project/not-open.py")
        moved(s, 10_000_000)  # past the end: clamped like any LSP position
        got = await inline(s, 3, 0, kind=2)  # still serving, and answering
        st = await stats(s)
        assert got.items
        assert st["inline"]["cursorMoves"] == 1  # only the last one was taken
        with pytest.raises(JsonRpcMethodNotFound, match="is a notification"):
            await s.client.protocol.send_request_async("mlxd/didMoveCursor", {})


async def test_typing_along_the_suggestion_made_at_rest_is_answered_from_it(
    tmp_path, tiny_model
) -> None:
    # What the suggestion there is: asked once the cursor rested (a cache hit), in one daemon.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        item = (await inline(s, MIDDLE, 0, kind=2)).items[0].insert_text
    assert len(item) >= 2
    # In another (same model, greedy): the cursor rests, the user types its first character.
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, LONG)
        moved(s, MIDDLE)
        await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        insert(s, 2, MIDDLE, 0, item[0])
        got = await inline(s, MIDDLE, 1, kind=2)
        st = await stats(s)
    assert [i.insert_text for i in got.items] == [item[1:]]
    assert (st["inline"]["cacheHits"], st["inline"]["generations"]) == (1, 0)


# After "):" a slow model writes a block: a short first line, then a line far longer than the
# bound below allows (the resting suggestion's time cap cuts it).
SLOW_BLOCK = "\n    if a:\n        total = alpha + - eps or not in is for while return yield None"
SLOW_BLOCK += " True self cls def class import from with as try except raise pass continue"


@pytest.fixture(scope="module")
def slow_block_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The slower model: the bound (0.4 s) must cut the block, even on a fast machine.
    return scripted(tmp_path_factory, "cursor-slow-block", "):" + SLOW_BLOCK, slower=True)


def scripted(
    tmp_path_factory: pytest.TempPathFactory, name: str, script: str, slower: bool = False
) -> Path:
    """The slow tiny model (8 layers; `slower`: 12 wider ones, 2-3x the time a token),
    greedy writing `script` after its first token."""
    from mlxd.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp(name) / "model"
    layers, hidden, intermediate = (12, 640, 1536) if slower else (8, 512, 1024)
    return make_tiny_model(
        path, layers=layers, hidden=hidden, intermediate=intermediate, script=script
    )


@pytest.mark.serial  # the bound must cut the block's second line, not its first
async def test_a_block_the_bound_cut_at_rest_goes_on_into_the_cache(
    tmp_path: Path, slow_block_model: Path
) -> None:
    # The suggestion made where the cursor rests is bounded as a request would be (max_ms):
    # at a block start the bound cut the block after its first line, and nothing went on (the
    # quality bench's blocks were one line at its 3 s pause, and asking again showed no more).
    # The rest of the block goes on into the cache now, as after a shown first line.
    cfg = write_config(
        tmp_path / "slow-block.toml",
        f'[local]\nmodel = "{slow_block_model}"\n[inline]\nmax_ms = 400\nmax_tokens = 128\n',
    )
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, "def f(a):")
        moved(s, 0, 9)
        # Usually the bound cuts the second line (an item: the first line); on a loaded machine
        # it may cut the first (no item): either way the block goes on and is stored whole.
        st = await until(s, lambda st: st["inline"]["restStored"] == 1 and idle(st))
        got = await inline(s, 0, 9, kind=2)
    assert st["inline"]["restStarted"] == 1 and st["inline"]["cursorItems"] <= 1, (
        st["inline"],
        s.logs[-8:],
    )
    assert [i.insert_text for i in got.items] == [SLOW_BLOCK]


# After "):" in a Lua file (no block there) a slow model writes one line far longer than the
# bound below allows, then ends it.
SLOW_LINE = SLOW_BLOCK.split("\n")[-1].lstrip() + "\n"


@pytest.fixture(scope="module")
def slow_line_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The slower model: the bound (0.4 s) must cut the line, even on a fast machine.
    return scripted(tmp_path_factory, "cursor-slow-line", "): " + SLOW_LINE, slower=True)


LUA_URI = "file:///work/project/app.lua"
LINE_ITEM = " " + SLOW_LINE.rstrip("\n")  # the suggestion at the end of "x = f(a):"


def line_config(tmp_path: Path, model: Path, max_ms: int = 400, max_tokens: int = 128) -> Path:
    return write_config(
        tmp_path / "line.toml",
        f'[local]\nmodel = "{model}"\n[inline]\nmax_ms = {max_ms}\nmax_tokens = {max_tokens}\n',
    )


async def resting_at_line_end(s: Session, text: str = "x = f(a):") -> None:
    """The Lua document `text` opened, the cursor resting at the end of its first line."""
    await s.wait_status("ready")
    open_doc(s, text, uri=LUA_URI, language="lua")
    moved(s, 0, 9, uri=LUA_URI)


@pytest.mark.serial  # the bound must cut the line
async def test_a_line_the_bound_cut_at_rest_goes_on_into_the_cache(
    tmp_path: Path, slow_line_model: Path
) -> None:
    # The suggestion made where the cursor rests, cut by its bound before its line ended,
    # left nothing: a request after it asked the model afresh, and its own bound cut the same
    # line again (empty answers). The line goes on into the cache now, and a request gets it.
    cfg = line_config(tmp_path, slow_line_model)
    async with daemon(cfg) as s:
        await resting_at_line_end(s)
        st = await until(s, lambda st: st["inline"]["restStored"] == 1 and idle(st))
        got = await inline(s, 0, 9, kind=2, uri=LUA_URI)
    assert st["inline"]["cursorItems"] == 0 and st["inline"]["restStarted"] == 1, (
        st["inline"],
        s.logs[-8:],
    )
    assert [i.insert_text for i in got.items] == [LINE_ITEM]


@pytest.mark.serial  # the request must arrive while the resting suggestion's job decodes
async def test_a_request_during_the_resting_line_joins_the_line_going_on(
    tmp_path: Path, slow_line_model: Path
) -> None:
    # A request that waited for the resting job, whose bound then cut its line, went on from
    # the cut text itself while the same line went on in the background: the line was
    # decoded twice. It joins the line going on now (aheadResumed stays 0).
    cfg = line_config(tmp_path, slow_line_model)
    async with daemon(cfg) as s:
        await resting_at_line_end(s)
        await until(s, lambda st: st["inline"]["warmups"] >= 1)  # the line's job starts now
        first = await inline(s, 0, 9, kind=2, uri=LUA_URI)
        st = await until(s, lambda st: st["inline"]["restStored"] == 1 and idle(st))
        again = await inline(s, 0, 9, kind=2, uri=LUA_URI)
    i = st["inline"]
    assert (i["aheadJoined"], i["aheadResumed"], i["restStarted"]) == (1, 0, 1), (i, s.logs[-8:])
    assert i["cacheHits"] == 0  # a join answered empty at its bound is no hit (attack10)
    assert not first.items  # the line is longer than the bound allows
    assert [x.insert_text for x in again.items] == [LINE_ITEM]


# A line so long that going on with it lasts seconds after the resting job's cut.
LONGER_LINE = SLOW_LINE.rstrip("\n") + " apple river mountain forest ocean desert winter summer"
LONGER_LINE += " spring north red green copper chair house bridge village people water school\n"


@pytest.fixture(scope="module")
def longer_line_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The slower model: the line must still be decoding when a move's settle (0.6 s) ends.
    # On the 8-layer one a fast machine (CI) ended it first, and nothing was left to replace.
    return scripted(tmp_path_factory, "cursor-longer-line", "): " + LONGER_LINE, slower=True)


async def test_a_move_elsewhere_replaces_the_resting_line_going_on(
    tmp_path: Path, longer_line_model: Path
) -> None:
    # The resting line going on (no time bound) held the document's place: a move elsewhere
    # warmed nothing there while it decoded, and its settle was not tried again (attack10).
    # It is replaced now, as the resting suggestion's own job is.
    cfg = line_config(tmp_path, longer_line_model, 400, 256)
    async with daemon(cfg) as s:
        await resting_at_line_end(s, "x = f(a):\n\nlocal y = 1")
        await until(s, lambda st: st["inline"]["restStarted"] == 1)
        moved(s, 1, 0, uri=LUA_URI)  # the user clicked elsewhere and rests there
        st = await until(s, lambda st: st["inline"]["warmups"] >= 2 and idle(st), timeout=30)
    # The new place is a line start: its suggestion (the script's long line, the line break
    # healed) is cut by the bound too and goes on to its end. The first one was stopped.
    i = st["inline"]
    assert (i["restStarted"], i["restStored"]) == (2, 1), (i, s.logs[-8:])


async def test_a_resting_job_with_no_token_by_its_bound_goes_on_with_its_line(
    tmp_path: Path, slow_line_model: Path
) -> None:
    # inline.max_ms = 1: the bound passes before the resting job's first token, always. It
    # left nothing, and no line went on from it (attack10). The line goes on from nothing now.
    cfg = line_config(tmp_path, slow_line_model, 1, 128)
    async with daemon(cfg) as s:
        await resting_at_line_end(s)
        st = await until(s, lambda st: st["inline"]["restStored"] == 1 and idle(st), timeout=30)
        got = await inline(s, 0, 9, kind=2, uri=LUA_URI)
    assert st["inline"]["cursorItems"] == 0 and st["inline"]["restStarted"] == 1, st["inline"]
    assert [i.insert_text for i in got.items] == [LINE_ITEM]


async def test_a_move_elsewhere_replaces_a_line_going_on_after_an_empty_answer(
    tmp_path: Path, longer_line_model: Path
) -> None:
    # A request's line cut by its bound (answered empty) goes on in the background. It held
    # the document's place: a move elsewhere warmed nothing, then or after it (attack11).
    cfg = line_config(tmp_path, longer_line_model, 400, 256)
    async with daemon(cfg) as s:
        await s.wait_status("ready")
        open_doc(s, "x = f(a):\n\nlocal y = 1", uri=LUA_URI, language="lua")
        before = await until(s, idle)
        got = await inline(s, 0, 9, kind=2, uri=LUA_URI)
        moved(s, 1, 0, uri=LUA_URI)  # the user clicked elsewhere and rests there
        warm = before["inline"]["warmups"] + 1
        st = await until(s, lambda st: st["inline"]["warmups"] >= warm and idle(st), timeout=30)
    # Two lines went on: the request's, stopped by the move (not stored: had it ended before
    # the move's settle, nothing would have been replaced), and the one cut at the new place
    # (a line start), stored.
    i = st["inline"]
    assert not got.items and (i["restStarted"], i["restStored"]) == (2, 1), i


async def test_at_a_block_start_the_resting_suggestion_is_chosen_among_candidates(
    tmp_path, tiny_model
) -> None:
    # inline/rerank.py through the real daemon: the greedy answer and rerank.SAMPLES sampled
    # ones from the local model's batch, each scored by the same model (its log-likelihood
    # followed by the code after the cursor, on the MLX thread), one of them kept.
    from mlxd.inline.rerank import SAMPLES

    text = "def f(a):\n" + LONG[:2000]
    async with daemon(config(tmp_path, tiny_model, "rerank = true\n")) as s:
        await s.wait_status("ready")
        open_doc(s, text)
        before = await until(s, lambda st: st["inline"]["warmups"] == 2 and idle(st))
        moved(s, 0, 9)  # the end of the header
        st = await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
        got = await inline(s, 0, 9, kind=2)
        after = await stats(s)
    assert st["inline"]["reranked"] == 1, (st["inline"], s.logs[-8:])
    # A warm-up of the window there, then the candidates side by side.
    assert local_total(st, "generations") - local_total(before, "generations") == 2 + SAMPLES
    assert got.items and got.items[0].insert_text.strip()
    assert after["inline"]["aheadHits"] == 1 and after["inline"]["generations"] == 0


async def test_by_default_the_resting_block_is_the_greedy_answer_alone(
    tmp_path, tiny_model
) -> None:
    text = "def f(a):\n" + LONG[:2000]
    async with daemon(config(tmp_path, tiny_model)) as s:
        await s.wait_status("ready")
        open_doc(s, text)
        before = await until(s, lambda st: st["inline"]["warmups"] == 2 and idle(st))
        moved(s, 0, 9)
        st = await until(s, lambda st: st["inline"]["cursorItems"] == 1 and idle(st))
    assert st["inline"]["reranked"] == 0
    assert local_total(st, "generations") - local_total(before, "generations") == 2
