"""A block's first line now, the rest in the background (issue #16 item 2), real daemon over
stdio with a tiny model that writes a known block (script_model): what is shown and cached does
not depend on timing or on a random walk."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import BLOCK, Session, write_config
from tests.conftest import daemon as start
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.e2e.test_work_ahead import insert, local_total, stats, until

pytestmark = pytest.mark.timeout(120)

FIRST, SECOND = BLOCK.split("\n")[1], BLOCK.split("\n")[2]  # "    if a:", "        return b"


def config(tmp_path: Path, model: Path, max_ms: int = 20000) -> Path:
    return write_config(
        tmp_path / "block.toml", f'[local]\nmodel = "{model}"\n[inline]\nmax_ms = {max_ms}\n'
    )


def texts(result: T.InlineCompletionList) -> list[str]:
    return [item.insert_text for item in result.items]


async def test_a_block_start_shows_the_block_its_first_lines_generation_writes_on(
    tmp_path, script_model
) -> None:
    # The request asks for the first line (on a slow machine, all the bound may give), the
    # same generation goes on in the background into the cache, and the request shows the
    # block as far as it is written by its bound (20 s here: all of it). Asking again shows
    # the block, accepting its first line shows the rest, and neither asks the model.
    async with start(config(tmp_path, script_model)) as s:
        await s.wait_status("ready")
        open_doc(s, "def add(a, b):")
        assert texts(await inline(s, 0, 14, kind=2)) == [BLOCK]
        before = await until(s, lambda st: st["inline"]["restStored"] == 1)
        assert texts(await inline(s, 0, 14, kind=2)) == [BLOCK]  # asked again
        insert(s, 2, 0, 14, "\n" + FIRST)  # the user accepts the shown line
        assert texts(await inline(s, 1, len(FIRST), kind=2)) == ["\n" + SECOND]
        after = await stats(s)
    assert after["inline"]["generations"] == before["inline"]["generations"]
    assert after["inline"]["restStarted"] == 1


async def test_an_answer_the_bound_cut_goes_on_and_answers_the_next_request_there(
    tmp_path, script_model
) -> None:
    # inline.max_ms = 1: the bound passes before the first token, always. Before, nothing went
    # on, and asking again at the same place started the model over. Now the generation goes
    # on in the background, and the next request there is answered from it (waiting for its
    # first line within its own bound, or from the cache), without a generation of its own.
    async with start(config(tmp_path, script_model, max_ms=1)) as s:
        await s.wait_status("ready")
        open_doc(s, "def add(a, b):")
        assert texts(await inline(s, 0, 14, kind=2)) == []
        cut = (await stats(s))["inline"]  # an empty answer by design, not a failure
        assert (cut["outOfTime"], cut["errors"]) == (1, 0), cut
        s.client.workspace_did_change_configuration(
            T.DidChangeConfigurationParams(settings={"inline": {"max_ms": 20000}})
        )
        before = await stats(s)
        again = texts(await inline(s, 0, 14, kind=2))
        after = await stats(s)
        assert after["inline"]["generations"] == before["inline"]["generations"]
        assert again in (["\n" + FIRST], [BLOCK])  # its first line, or all of it by then
        await until(s, lambda st: st["inline"]["restStored"] == 1)
        assert texts(await inline(s, 0, 14, kind=2)) == [BLOCK]


async def test_the_rest_goes_on_from_the_prompt_the_time_cap_chose(tmp_path, script_model) -> None:
    # The first request's prompt is cut to what the time cap allows (no speed measured yet:
    # the starting guess allows ~90 new tokens of a ~1,900-token document). The rest of the
    # block has no time cap; rendered anew it took the full window, ~1,000 tokens that the KV
    # cache did not hold. It goes on from the very prompt the first line came from now.
    lines = "".join(f"value_{i} = {i} * {i}\n" for i in range(300))
    async with start(config(tmp_path, script_model, max_ms=1500)) as s:
        await s.wait_status("ready")
        open_doc(s, lines + "def add(a, b):")  # asked at once: no warm-up before it
        assert texts(await inline(s, 300, 14, kind=2))
        st = await until(s, lambda st: st["inline"]["restStored"] == 1)
    # One generation: the first line's went on with the rest of the block (types.GoOn), which
    # the model ends after its second line; before, the rest was a second request.
    assert local_total(st, "generations") == 1
    prefilled = local_total(st, "promptTokens") - local_total(st, "cachedPromptTokens")
    assert prefilled < 250, prefilled  # the first prompt (~100) and the line, not ~1,100 more


LINE = "\n    return a"  # the block of one line the models below write after "):"


def _one_line_block(factory: pytest.TempPathFactory, name: str, **size: int) -> Path:
    """A model that, greedy after "):", writes LINE, then a line break, and ends."""
    from mlxd.models.tiny import make_tiny_model

    return make_tiny_model(factory.mktemp(name) / "model", script="):" + LINE + "\n", **size)


async def _shows_the_line(s: Session) -> None:
    """At the end of `def add(a, b):`, the ghost text is LINE."""
    await s.wait_status("ready")
    open_doc(s, "def add(a, b):")
    assert texts(await inline(s, 0, 14, kind=2)) == [LINE]


@pytest.fixture(scope="module")
def one_line_block_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _one_line_block(tmp_path_factory, "tiny-one-line-block")


async def test_after_a_block_of_one_line_the_next_suggestion_is_ready_before_the_accept(
    tmp_path, one_line_block_model
) -> None:
    # The block's generation ends with its first line and writes nothing after it but a line
    # break. Before, nothing was worked out after that line: the request after the accept
    # asked the model (in the typing bench, 0.6-1.4 s to learn that nothing fits there). Now
    # a next job runs there once the block has ended: the accept's request is a cache hit.
    async with start(config(tmp_path, one_line_block_model)) as s:
        await _shows_the_line(s)
        # The next job after the block's line (before: none ever started), run to its end.
        ran = lambda st: st["inline"]["aheadStarted"] == 1 and st["inline"]["aheadActive"] == 0  # noqa: E731
        st = await until(s, ran, timeout=20)
        insert(s, 2, 0, 14, LINE)  # the user accepts it
        assert texts(await inline(s, 1, 12, kind=2)) == []  # nothing fits after the block
        after = await stats(s)
    assert after["inline"]["generations"] == st["inline"]["generations"]  # no model asked
    assert after["inline"]["aheadHits"] == st["inline"]["aheadHits"] + 1


@pytest.fixture(scope="module")
def slow_one_line_block_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same block, from a model slow enough that an accept comes while the block goes on."""
    return _one_line_block(tmp_path_factory, "tiny-one-line-block-slow", layers=12, hidden=1024)


async def test_an_accept_before_the_block_has_ended_waits_for_the_next_job_only(
    tmp_path, slow_one_line_block_model
) -> None:
    # The user accepts the line at once: the request waits for the block going on there; the
    # block ends, and the next job starts at the request's very position. Before, the request
    # then asked the model too, and both generations ran side by side (attack, session 15).
    async with start(config(tmp_path, slow_one_line_block_model)) as s:
        await _shows_the_line(s)
        insert(s, 2, 0, 14, LINE)  # accepted at once
        assert texts(await inline(s, 1, 12, kind=2)) == []
        st = await until(s, lambda st: st["inline"]["aheadActive"] == 0)
    inline_ = st["inline"]
    assert inline_["restStarted"] == 1 and inline_["aheadJoined"] == 1, inline_
    assert inline_["aheadStarted"] == 1 and inline_["generations"] == 1, inline_


async def test_an_empty_answer_is_cached_for_automatic_requests_and_retried_when_invoked(
    tmp_path, one_line_block_model
) -> None:
    # "" is cached at its position until the text changes (more of them now: a cut answer whose
    # whole lines were dropped). Asked for explicitly (triggerKind Invoked), the model tries
    # again: its last answer may have come from a prompt a time cap cut short.
    async with start(config(tmp_path, one_line_block_model)) as s:
        await s.wait_status("ready")
        open_doc(s, "def add(a, b):" + LINE)
        assert texts(await inline(s, 1, 12, kind=2)) == []
        first = (await stats(s))["inline"]["generations"]
        assert texts(await inline(s, 1, 12, kind=2)) == []  # automatic: from the cache
        assert (await stats(s))["inline"]["generations"] == first
        assert texts(await inline(s, 1, 12, kind=1)) == []  # invoked: asked again
        assert (await stats(s))["inline"]["generations"] == first + 1
