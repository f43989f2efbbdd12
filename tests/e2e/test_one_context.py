"""One inline path (issue #13): an inline request builds its cursor context once and its prompt
is trimmed once, by the backend that serves it. Before, the engine built the context and
pre-trimmed it with a loose count, and the local backend trimmed it again with its tokenizer
(two trims; and one more for each prompt size it tried against the time cap)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from lsprotocol import types as T

from tests.conftest import _plain, cloud_first_config, daemon, write_config
from tests.e2e.test_inline_e2e import inline, inline_config, open_doc  # noqa: F401 (fixture)
from tests.fakes.providers import FakeProvider, Reply

# Work ahead (inline.background) builds the contexts of other positions, in the background:
# counted by test_work_ahead.py, off here.
NO_BACKGROUND = {"inline": {"background": False}}
KEY = "sk-one-context-0123456789"
# A document far longer than any prompt budget: 4000 numbered lines, then a cursor line.
LONG = "".join(f"value_{n:04d} = compute({n}, {n + 1})\n" for n in range(4000))

pytestmark = pytest.mark.timeout(90)


async def counts(s) -> dict[str, int]:
    return _plain(await s.request("mlxd/stats", {}))["inline"]


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = ("generations", "contextBuilds", "trims")
    return {k: after[k] - before[k] for k in keys}


async def test_a_local_inline_request_builds_its_context_once_and_trims_it_once(
    inline_config: Path,  # noqa: F811
) -> None:
    async with daemon(inline_config, init_options=NO_BACKGROUND) as s:
        open_doc(s, LONG + "def add(a, b):\n    return ")
        before = await counts(s)
        await inline(s, 4001, 11, kind=2)  # automatic: one generation, no alternatives
        after = await counts(s)
    assert delta(before, after) == {"generations": 1, "contextBuilds": 1, "trims": 1}


async def test_a_prompt_narrowed_to_the_time_cap_is_still_trimmed_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    # With a 4 s cap and no measured speed yet (the first guesses: 250 tokens/s prefill, 10
    # decode), the time cap allows about half the 1024-token prompt: the local backend cuts a
    # smaller window out of the one it trimmed, without trimming the document again. (1 s left
    # the backend no time on a loaded machine: the bound answered before it cut the prompt.)
    cfg = write_config(
        tmp_path / "capped.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n'
        "[inline]\nmax_ms = 4000\nwhole_lines = false\nbackground = false\n",
    )
    async with daemon(cfg, env={"MLXD_LOG_LEVEL": "DEBUG"}) as s:
        await s.wait_status("ready", timeout=60)  # loaded: the cap is not spent on the load
        open_doc(s, LONG + "x = ")
        before = await counts(s)
        await inline(s, 4000, 4, kind=2)
        # The bound may answer before the backend (off the event loop) has cut its prompt: the
        # record of the narrowing comes after the trim, so counts read after it are complete.
        narrowed = await narrowing_logged(s)
        after = await counts(s)
    assert narrowed, "the time cap did not narrow the prompt: this test checks nothing"
    assert delta(before, after) == {"generations": 1, "contextBuilds": 1, "trims": 1}


async def narrowing_logged(s, within_s: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while loop.time() < end:
        if any("allowed by the time cap" in m.message for m in s.client.log_messages):
            return True
        await asyncio.sleep(0.05)
    return False


def cloud_config(tmp_path: Path, tiny_model: Path, url: str, budget: int) -> Path:
    extra = f"[inline]\nmax_ms = 20000\ncontext_tokens = {budget}\nneighbor_snippets = true\n"
    extra += "background = false\n"
    return cloud_first_config(tmp_path / "c.toml", tiny_model, url, "ONE_KEY", ("inline",), extra)


def sent_text(body: dict) -> str:
    """The header, prefix and suffix of the chat prompt a provider got (messages.py's shape)."""
    user = body["messages"][-1]["content"]
    assert "```python\n" in user and "<CURSOR>" in user, user[:200]
    return user.replace("Context:\n", "", 1).replace("```python\n", "").replace("<CURSOR>", "")


async def test_a_cloud_inline_request_is_trimmed_once_to_its_budget(
    tmp_path: Path, tiny_model: Path
) -> None:
    budget = 1024
    # A neighbour sharing the cursor's words: snippets of it go in the header.
    util = "".join(f"compute(value_39{n:02d})\n" for n in range(40))
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, budget)
        async with daemon(cfg, env={"ONE_KEY": KEY}) as s:
            open_doc(s, util, uri="file:///p/util.py")  # a neighbour: snippets in the header
            open_doc(s, LONG + "y = value_0001 + ")
            before = await counts(s)
            await inline(s, 4000, len("y = value_0001 + "), kind=2)
            after = await counts(s)
    assert fake.request_count == 1
    assert delta(before, after) == {"generations": 1, "contextBuilds": 1, "trims": 1}
    text = sent_text(fake.requests[0].body)
    # Header (path, snippets), prefix and suffix within the budget, counted as the provider's
    # loose 5 characters a token (plus the line breaks the prompt's shape adds) ...
    assert len(text) <= budget * 5 + 8, len(text)
    # ... and most of it used: the text nearest the cursor, up to the cursor.
    assert len(text) > budget * 5 // 2
    assert "value_3999 = compute(3999, 4000)\ny = value_0001 +" in text
    assert "# path: project/app.py" in text  # the header: its last line is kept longest


# --- the content rule (taint.quotes) reads what a provider is sent ------------------------------


ENV = "API_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2-but-longer\n"


def complete_config(tmp_path: Path, tiny_model: Path, url: str) -> Path:
    extra = 'exclude = ["*.env"]\n[inline]\ncontext_tokens = 64\n'
    path = tmp_path / "complete.toml"
    return cloud_first_config(path, tiny_model, url, "ONE_KEY", ("complete",), extra)


async def test_a_complete_request_is_sent_whole_and_its_quote_check_reads_all_of_it(
    tmp_path: Path, tiny_model: Path
) -> None:
    # mlxd/complete carries no budget: a provider gets its prefix as it is (far past
    # inline.context_tokens), so a quote of an excluded document anywhere in it keeps it local,
    # and without one the provider gets every byte the quote check read.
    far = "API_TOKEN=sk-live-5f2c9a8e7d6b\n" + LONG[:20_000] + "total = "
    plain = LONG[:20_000] + "total = "
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        async with daemon(
            complete_config(tmp_path, tiny_model, fake.openai_url), env={"ONE_KEY": KEY}
        ) as s:
            s.client.text_document_did_open(
                T.DidOpenTextDocumentParams(
                    T.TextDocumentItem(
                        uri="file:///p/.env", language_id="dotenv", version=1, text=ENV
                    )
                )
            )
            await s.request("mlxd/complete", {"prefix": far, "maxTokens": 2})
            assert fake.request_count == 0  # the quote, 20 000 characters up, kept it local
            await s.request("mlxd/complete", {"prefix": plain, "maxTokens": 2})
    assert fake.request_count == 1
    assert plain in json.dumps(fake.requests[0].body, ensure_ascii=False).replace("\\n", "\n")
