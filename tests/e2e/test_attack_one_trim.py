"""Attack on "one trim per inline request" (bb6df48, issue #13): the engine now hands the whole
document around the cursor to the backend with its budget (`Request.context_tokens`); a local
model trims it with its tokenizer (`prompts.fit_window`, time-cap windows cut from it with
`Window.narrowed`), a provider trims it loosely (`backends/messages.sized`, 5 characters a
token, header included). Inputs a hostile repository, a hostile server or an odd config could
use, through the real daemon over stdio, the loopback fake providers and the tiny model.

Findings were strict xfails, now fixed (their reasons stay in the comments); inputs that did not
break anything are plain tests that assert the property, so they guard against a regression."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig

from tests.conftest import Session, _plain, cloud_first_config, daemon, write_config
from tests.e2e.test_inline_e2e import inline, open_doc
from tests.fakes.providers import FakeProvider, Reply
from tests.kit import daemon_env, serve_cmd

pytestmark = pytest.mark.timeout(180)

KEY = "sk-attack-one-trim-0123456789"
ENV = {"TRIM_KEY": KEY}
URI = "file:///work/project/app.py"
HEADER = "# path: project/app.py\n"  # the header of URI, with no neighbour open
ENV_URI = "file:///work/project/.env"  # excluded by the default routing.exclude
ENV_TEXT = "API_TOKEN=sk-live-5f2c9a8e7d6b\nDB_PASSWORD=hunter2-but-longer\n"
# 4000 numbered lines: far more than any budget here, in characters and in tokens.
LONG = "".join(f"value_{n:04d} = compute({n}, {n + 1})\n" for n in range(4000))


def cloud_config(tmp_path: Path, tiny_model: Path, url: str, inline_extra: str = "") -> Path:
    """Inline (and complete) on the fake provider first, then the tiny model; no work ahead."""
    extra = "[inline]\nmax_ms = 20000\nbackground = false\nwhole_lines = false\n" + inline_extra
    return cloud_first_config(
        tmp_path / "trim.toml", tiny_model, url, "TRIM_KEY", ("inline", "complete"), extra
    )


def user_text(body: dict[str, Any]) -> str:
    """The user message a chat provider got for an inline request (messages.py's shape)."""
    return body["messages"][-1]["content"]


def sent(body: dict[str, Any]) -> tuple[str, str, str]:
    """(header, prefix, suffix) of an inline request as the provider got it."""
    user = user_text(body)
    header = ""
    if user.startswith("Context:\n"):
        header, user = user[len("Context:\n") :].split("\n\n```", 1)
        user = "```" + user
    code = user.split("\n", 1)[1].rsplit("\n```", 1)[0]
    prefix, suffix = code.split("<CURSOR>", 1)
    return header, prefix, suffix


async def counts(s: Any) -> dict[str, int]:
    return _plain(await s.request("mlxd/stats", {}))["inline"]


# --- 1. what a provider is sent: never more than its budget, whatever the document ---------------


@pytest.mark.slow
async def test_a_huge_document_sends_a_provider_only_the_budget_around_the_cursor(
    tmp_path: Path, tiny_model: Path
) -> None:
    # ~52 MB in 1 M lines (under the 64 MB message limit), the cursor in the middle: the prefix
    # and the suffix are each ~26 MB as the engine hands them to the router.
    budget = 1024
    half = 510_000
    lines = [f"line_{n:07d} = compute({n}, {n + 1})  # pad pad\n" for n in range(2 * half)]
    text = "".join(lines[:half]) + "cursor_here = " + "\n" + "".join(lines[half:])
    assert len(text) > 50_000_000
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, f"context_tokens = {budget}\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, text)
            first = await inline(s, half, len("cursor_here = "), kind=2)
            # The daemon keeps serving: a second request on the same document answers too.
            second = await inline(s, half, len("cursor_here ="), kind=2)
    assert first.items and second.items is not None
    assert fake.request_count == 2
    for request in fake.requests:
        header, prefix, suffix = sent(request.body)
        assert header == HEADER
        # The budget at 5 characters a token, header included (plus the line break after it).
        assert len(header) + len(prefix) + len(suffix) <= budget * 5 + 1
    _, prefix, suffix = sent(fake.requests[0].body)
    assert prefix.endswith(lines[half - 1] + "cursor_here =")
    assert suffix.startswith("\n" + lines[half])
    # Text next to the cursor, from a line start, in one piece each side.
    offset = text.index("cursor_here = ") + len("cursor_here = ")
    assert ("\n" + text[: offset - 1]).endswith("\n" + prefix)
    assert text.startswith(suffix, offset)
    assert "line_0000000" not in json.dumps([r.body for r in fake.requests])


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
async def test_multibyte_text_and_every_line_break_are_cut_on_line_starts_for_a_provider(
    tmp_path: Path, tiny_model: Path, newline: str
) -> None:
    # Astral characters (two UTF-16 units each: LSP columns count them twice), CJK and
    # combining marks on every line, CR/CRLF/LF ends: the provider gets whole lines of the
    # document, exactly as they are, the cut falling on a line start, never inside a pair.
    budget = 256
    lines = [f"s_{n:04d} = '😀 漢字 é{n}'  # 🧪{newline}" for n in range(3000)]
    cursor_line = "total = '😀😀' + "
    text = "".join(lines) + cursor_line + newline + "".join(lines[:50])
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, f"context_tokens = {budget}\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, text)
            # UTF-16 column after the two emoji: 9 + 2 * 2 + 4 units ("total = '" ... "' + ").
            column = len(cursor_line.encode("utf-16-le")) // 2
            result = await inline(s, 3000, column, kind=2)
    assert result.items is not None and fake.request_count == 1
    _, prefix, suffix = sent(fake.requests[0].body)
    assert prefix.endswith(cursor_line.rstrip(" "))
    whole_prefix = "".join(lines) + cursor_line.rstrip(" ")
    assert whole_prefix.endswith(prefix)
    assert prefix.startswith("s_")  # a line start, not the middle of one (or of a CRLF)
    assert suffix.startswith(newline + "s_0000 = ")
    assert text.startswith(suffix, len(whole_prefix) + 1)  # after the space at the cursor
    assert len(prefix) + len(suffix) + len(HEADER) <= budget * 5 + 1
    assert "\ufffd" not in prefix + suffix


async def test_a_cursor_line_just_under_the_character_bound_still_fills_a_providers_budget(
    tmp_path: Path, tiny_model: Path
) -> None:
    budget = 1024
    # Header "# path: project/app.py\n" = 5 loose tokens: the prefix gets 1019 of them, and a
    # line up to 1019 * 64 = 65,216 characters is measured, not skipped.
    line = "".join(chr(ord("a") + n % 26) for n in range(65_200))
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, f"context_tokens = {budget}\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, line)
            await inline(s, 0, len(line), kind=2)
    assert fake.request_count == 1
    _, prefix, _ = sent(fake.requests[0].body)
    assert line.endswith(prefix)
    assert len(prefix) >= budget * 5 // 2, len(prefix)  # 16 on the current code


async def test_a_local_prompt_of_a_line_just_under_the_character_bound_fills_its_budget(
    tmp_path: Path, tiny_model: Path
) -> None:
    budget = 256
    cfg = write_config(
        tmp_path / "local.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline]\ncontext_tokens = {budget}\n',
    )
    text = "".join(f"w{n % 97} " for n in range(10_000))

    async with daemon(cfg) as s:

        async def prompt_tokens(length: int) -> int:
            # mlxd/complete on the local model is trimmed by the same fit_window_for, and reports
            # the tokens the model got.
            params = {"prefix": text[:length], "maxTokens": 1}
            return _plain(await s.request("mlxd/complete", params))["usage"]["promptTokens"]

        over = await prompt_tokens(17_000)  # past budget * 64: a tail is cut, then measured
        under = await prompt_tokens(16_300)  # under it: measured, then cut
    assert over >= budget // 2, over
    assert under >= budget // 2, (under, over)


# --- 2. the content rule: text quoted from an open excluded document -----------------------------


def _neighbour_quoting_env() -> str:
    # A public file of the repository that quotes the excluded .env's lines, sharing the cursor's
    # identifiers so that its lines become neighbour snippets.
    return "def compute(a, b):\n    # API_TOKEN=sk-live-5f2c9a8e7d6b\n    return a + b\n"


@pytest.mark.parametrize("where", ["document", "neighbour-snippet"])
async def test_an_inline_prompt_quoting_an_open_excluded_document_stays_local(
    tmp_path: Path, tiny_model: Path, where: str
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, "neighbor_snippets = true\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, ENV_TEXT, uri=ENV_URI, language="dotenv")
            if where == "document":
                doc = "import os\n# API_TOKEN=sk-live-5f2c9a8e7d6b\nvalue = compute(1, 2)\nx = "
            else:
                open_doc(s, _neighbour_quoting_env(), uri="file:///work/project/util.py")
                doc = "from util import compute\n\nvalue = compute(1, 2)\nx = "
            open_doc(s, doc)
            await inline(s, 3, 4, kind=2)
        bodies = json.dumps([r.body for r in fake.requests])
    assert "sk-live-5f2c9a8e7d6b" not in bodies


async def test_a_quote_of_an_excluded_document_beyond_the_budget_is_never_sent(
    tmp_path: Path, tiny_model: Path
) -> None:
    # The whole document travels to the backend now; what is past the budget must still never
    # leave: the .env line 4000 lines above the cursor is not in what the provider gets.
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, "context_tokens = 512\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, ENV_TEXT, uri=ENV_URI, language="dotenv")
            open_doc(s, "# API_TOKEN=sk-live-5f2c9a8e7d6b\n" + LONG + "x = ")
            await inline(s, 4001, 4, kind=2)
            # ... and on the other side of the cursor.
            open_doc(s, "x = \n" + LONG + "# DB_PASSWORD=hunter2-but-longer\n", uri=URI + "2")
            await inline(s, 0, 4, kind=2, uri=URI + "2")
    assert fake.request_count == 2  # both went to the provider: the check can fail
    bodies = json.dumps([r.body for r in fake.requests])
    assert "value_3999 = compute(3999, 4000)" in bodies and "value_0000 = " in bodies
    assert "sk-live-5f2c9a8e7d6b" not in bodies and "hunter2" not in bodies


async def test_complete_for_a_provider_is_sent_whole_and_checked_whole(
    tmp_path: Path, tiny_model: Path
) -> None:
    # mlxd/complete carries no budget: the provider gets the text the content rule read. A
    # quote at the far end of a 12 KB suffix (past any inline budget) keeps it local; without
    # one, the provider gets all of it.
    far = "x = 1\n" * 2000
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, "context_tokens = 64\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, ENV_TEXT, uri=ENV_URI, language="dotenv")
            params = {"prefix": "y = ", "suffix": far + "API_TOKEN=sk-live-5f2c9a8e7d6b\n"}
            await s.request("mlxd/complete", {**params, "maxTokens": 2})
            assert fake.request_count == 0
            await s.request("mlxd/complete", {"prefix": far + "y = ", "maxTokens": 2})
    assert fake.request_count == 1
    assert far + "y = " in user_text(fake.requests[0].body)


async def test_complete_with_a_quote_split_at_the_cursor_stays_local(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url)
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, ENV_TEXT, uri=ENV_URI, language="dotenv")
            params = {"prefix": "# settings\nDB_PASSWORD=hun", "suffix": "ter2-but-longer\n"}
            await s.request("mlxd/complete", {**params, "maxTokens": 2})
    assert fake.request_count == 0, user_text(fake.requests[0].body)


# --- 3. fallback in one request: each backend trims by its own budget ----------------------------


async def test_a_cloud_after_a_failed_local_model_trims_by_its_own_budget(
    tmp_path: Path, tiny_model: Path
) -> None:
    budget = 512
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = write_config(
            tmp_path / "lc.toml",
            f"""
[local]
model = "{tmp_path / "no-such-model"}"
[backends.cloud]
protocol = "openai"
base_url = "{fake.openai_url}"
api_key_env = "TRIM_KEY"
model = "gpt-test"
[routing]
cloud = true
inline = ["local", "cloud"]
[inline]
max_ms = 20000
background = false
context_tokens = {budget}
""",
        )
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, LONG + "y = ")
            result = await inline(s, 4000, 4, kind=2)
    assert fake.request_count == 1 and result.items
    header, prefix, suffix = sent(fake.requests[0].body)
    assert len(header) + len(prefix) + len(suffix) <= budget * 5 + 1
    assert prefix.endswith("value_3999 = compute(3999, 4000)\ny =")


async def test_a_local_model_after_a_failed_cloud_trims_to_its_window(
    tmp_path: Path, tiny_model: Path
) -> None:
    # A budget far past the tiny model's 4096-token window (the user's, for a provider): the
    # cloud fails (500), and the local model must still get a prompt that fits its window.
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.status(500)
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, "context_tokens = 1000000\n")
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, LONG * 3 + "y = ")
            before = await counts(s)
            result = await inline(s, 12000, 4, kind=2)
            after = await counts(s)
    assert fake.request_count >= 1
    assert result.items, "the local model gave nothing: its prompt did not fit?"
    assert after["errors"] == before["errors"]
    assert after["trims"] - before["trims"] == 1 + fake.request_count  # one per attempt


# --- 4. budgets from config: 0, negative, past the model's window -------------------------------


@pytest.mark.parametrize("bad", [0, -5, 10**9, "2048", 1.5])
async def test_a_workspace_budget_out_of_range_is_refused_and_the_users_holds(
    tmp_path: Path, tiny_model: Path, bad: Any
) -> None:
    budget = 256
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, f"context_tokens = {budget}\n")
        layer = {"workspace": {"inline": {"context_tokens": bad}}}
        async with daemon(cfg, env=ENV, init_options=layer) as s:
            open_doc(s, LONG + "y = ")
            await inline(s, 4000, 4, kind=2)
            shown = " ".join(m.message for m in s.messages)
    assert "context_tokens" in shown, shown
    assert fake.request_count == 1
    header, prefix, suffix = sent(fake.requests[0].body)
    assert len(header) + len(prefix) + len(suffix) <= budget * 5 + 1


async def test_a_workspace_budget_past_the_models_window_still_answers_locally(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = write_config(
        tmp_path / "local.toml",
        f'[local]\nmodel = "{tiny_model}"\n'
        "[inline]\nmax_ms = 20000\nbackground = false\nwhole_lines = false\nmax_tokens = 1\n",
    )
    layer = {"workspace": {"inline": {"context_tokens": 1_000_000}}}
    async with daemon(cfg, init_options=layer) as s:
        open_doc(s, LONG * 3 + "y = ")
        before = await counts(s)
        result = await inline(s, 12000, 4, kind=2)
        after = await counts(s)
    assert result.items, "no answer: the prompt overflowed the model's 4096-token window?"
    assert after["errors"] == before["errors"]


# A workspace may set inline.context_tokens (trust._INLINE_FREE) up to 1,000,000: neighbour
# snippets may then take 500,000 characters of the header, while a local model's header share is
# a quarter of its window. prompts.fim._clip_header drops the header's first line and tokenizes
# all the rest again, line by line: quadratic. A ~46 KB neighbour makes one inline request
# tokenize ~1 GB, in an executor thread nothing can stop (tens of seconds to minutes here).
NEIGHBOUR = "".join(f"total_{n:04d} = compute(total_{n:04d}, {n})\n" for n in range(1200))


@asynccontextmanager
async def killed_after(config: Path, init_options: dict[str, Any]) -> AsyncIterator[Session]:
    """conftest.daemon, but the process is killed (SIGKILL) at the end: a daemon that does not
    exit on `exit` or SIGTERM must not fail the teardown instead of the test, nor outlive it."""
    client = await ClientServerConfig(
        server_command=serve_cmd(config), server_env=daemon_env()
    ).start()
    caps = T.ClientCapabilities(window=T.WindowClientCapabilities(work_done_progress=True))
    params = T.InitializeParams(capabilities=caps, initialization_options=init_options)
    await client.initialize_session(params)
    try:
        yield Session(client)
    finally:
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
        await client.stop()


async def _clip_case(tmp_path: Path, tiny_model: Path) -> tuple[Any, Session]:
    cfg = write_config(
        tmp_path / "local.toml",
        f'[local]\nmodel = "{tiny_model}"\n'
        "[inline]\nmax_ms = 8000\nbackground = false\nwhole_lines = false\nmax_tokens = 4\n",
    )
    return cfg, {"workspace": {"inline": {"context_tokens": 1_000_000}}}


async def test_a_workspace_budget_with_a_large_neighbour_still_answers_within_max_ms(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg, layer = await _clip_case(tmp_path, tiny_model)
    async with killed_after(cfg, layer) as s:
        open_doc(s, NEIGHBOUR, uri="file:///work/project/util.py")
        open_doc(s, "from util import compute\n\nresult = compute(1, 2)\nx = ")
        result = await inline(s, 3, 4, kind=2)
        stats = await counts(s)
    # Empty on the current code, after 8 s, errors 1 and trims 0: the trim never finished.
    assert result.items, f"no suggestion within inline.max_ms: {stats}"


async def test_a_daemon_exits_promptly_after_an_inline_request_whose_trim_ran_long(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg, layer = await _clip_case(tmp_path, tiny_model)
    async with killed_after(cfg, layer) as s:
        open_doc(s, NEIGHBOUR, uri="file:///work/project/util.py")
        open_doc(s, "from util import compute\n\nresult = compute(1, 2)\nx = ")
        await inline(s, 3, 4, kind=2)  # answered (empty) at inline.max_ms
        await s.client.shutdown_async(None)
        s.client.exit(None)
        process = s.client._server
        assert process is not None
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            pytest.fail("the daemon was still running 10 s after `exit`")


# --- 5. a provider that is never sent the header ---------------------------------------------


async def test_a_legacy_completions_provider_gets_the_whole_budget_of_the_document(
    tmp_path: Path, tiny_model: Path
) -> None:
    budget = 1024  # snippets get 512 characters: a window fits
    async with FakeProvider(require_key=KEY) as fake:
        fake.default = Reply.text([" 1"])
        extra = f"context_tokens = {budget}\nneighbor_snippets = true\n"
        cfg = cloud_config(tmp_path, tiny_model, fake.openai_url, extra)
        cfg.write_text(
            cfg.read_text().replace('model = "gpt-test"', 'model = "gpt-test"\ncompletions = true')
        )
        doc = LONG + "y = compute(value_0001, "
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, doc)
            await inline(s, 4000, len(doc.rsplit("\n", 1)[1]), kind=2)
            # A neighbour sharing the cursor's words: its snippets go into the header.
            util = "".join(f"compute(value_39{n:02d})\n" for n in range(40))
            open_doc(s, util, uri="file:///work/project/util.py")
            open_doc(s, doc, uri=URI + "x")  # the same text, another document: no cache
            await inline(s, 4000, len(doc.rsplit("\n", 1)[1]), kind=2, uri=URI + "x")
    assert fake.request_count == 2
    alone, beside = (r.body for r in fake.requests)
    assert fake.requests[0].path.endswith("/completions") and "messages" not in alone
    assert alone["prompt"] == beside["prompt"], (len(alone["prompt"]), len(beside["prompt"]))


# --- 6. a local model's one trim of a huge document, within inline.max_ms ----------------------


@pytest.mark.slow
async def test_a_local_model_trims_a_huge_document_within_max_ms_greedy_and_sampled(
    tmp_path: Path, tiny_model: Path
) -> None:
    # The whole ~52 MB document now reaches the local backend, which splits it into lines (in
    # a thread) for each request: a greedy one and an invoked one with its sampled alternatives
    # (each its own trim) all answer, within inline.max_ms as the daemon measures it (measured
    # here: ~1 s each on a loaded 2-core machine; 5 s is the bound).
    cfg = write_config(
        tmp_path / "local.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n'
        "[inline]\nmax_ms = 5000\nbackground = false\nwhole_lines = false\nmax_tokens = 8\n",
    )
    half = 510_000
    lines = [f"line_{n:07d} = compute({n}, {n + 1})  # pad pad\n" for n in range(2 * half)]
    text = "".join(lines[:half]) + "cursor_here = " + "\n" + "".join(lines[half:])
    async with daemon(cfg) as s:
        await s.wait_status("ready", timeout=60)
        open_doc(s, text)
        greedy = await inline(s, half, 14, kind=2)
        invoked = await inline(s, half, 13, kind=1)
        stats = await counts(s)
    assert greedy.items and invoked.items
    assert stats["errors"] == 0 and stats["late"] == 0, stats


# --- 7. every attempt, every provider protocol: the same window ---------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_each_attempt_of_each_protocol_gets_the_same_window_within_the_budget(
    tmp_path: Path, tiny_model: Path, protocol: str
) -> None:
    # A 429 then an answer: the retry trims again (messages.sized on every attempt) and must send
    # exactly the first attempt's text; the Anthropic backend trims as the OpenAI one does.
    budget = 512
    async with FakeProvider(require_key=KEY) as fake:
        fake.enqueue(Reply.status(429, retry_after=0.1))
        fake.default = Reply.text([" 1"])
        url = fake.anthropic_url if protocol == "anthropic" else fake.openai_url
        cfg = cloud_config(tmp_path, tiny_model, url, f"context_tokens = {budget}\n")
        cfg.write_text(cfg.read_text().replace('protocol = "openai"', f'protocol = "{protocol}"'))
        async with daemon(cfg, env=ENV) as s:
            open_doc(s, LONG + "y = ")
            result = await inline(s, 4000, 4, kind=2)
    assert result.items and fake.request_count == 2
    first, second = (r.body for r in fake.requests)
    assert first["messages"] == second["messages"]
    header, prefix, suffix = sent(first)
    assert len(header) + len(prefix) + len(suffix) <= budget * 5 + 1
    assert prefix.endswith("value_3999 = compute(3999, 4000)\ny =")
    assert "value_0000 = " not in json.dumps(first)
