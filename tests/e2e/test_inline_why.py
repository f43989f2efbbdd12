"""Why an inline request showed nothing (issue #18, a new user's finding): with
`MLXD_LOG_LEVEL=DEBUG` the daemon logs one record per inline request with its item count and,
when it has none or fewer than it could, the reason: a cap that cut the answer before its first
line ended, the post-processing rule that emptied it, the language switched off, a newer request
that superseded it, a failed generation. Real daemon over stdio; the tiny model, or a loopback
provider where the answer must be a chosen text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Session, daemon, write_config
from tests.e2e.test_inline_e2e import URI, inline, open_doc
from tests.e2e.test_router import ENV, KEY, make_config
from tests.fakes.providers import FakeProvider, Reply

pytestmark = pytest.mark.timeout(120)

DEBUG = {"MLXD_LOG_LEVEL": "DEBUG"}
DOC = "def add(a, b):\n    \n"


def records(s: Session) -> list[str]:
    return [m for m in s.logs if m.startswith(f"inline {URI} ")]


async def one_record(s: Session, line: int, character: int) -> str:
    """The debug record of one request at (line, character): exactly one."""
    before = len(records(s))
    await inline(s, line, character, kind=2)
    for _ in range(100):  # the record is sent before the response; the log may trail it
        if len(records(s)) > before:
            break
        await asyncio.sleep(0.02)
    new = records(s)[before:]
    assert len(new) == 1, s.logs
    return new[0]


@pytest.fixture
async def fake() -> Any:
    async with FakeProvider(require_key=KEY) as f:
        yield f


async def test_a_cap_that_cut_the_first_line_is_the_reason(tmp_path: Path, tiny_model: Path):
    """whole_lines (the default) with a 4-token cap: the random tiny model never ends a line,
    so nothing is left, and the record says a cap cut it. The time cap is out of the way: on a
    loaded machine no first token within the default 1.5 s is another reason (a failure)."""
    cfg = write_config(
        tmp_path / "c.toml",
        f'[local]\nmodel = "{tiny_model}"\npreload = true\n'
        "[inline]\nmax_tokens = 4\nmax_ms = 60000\n",
    )
    async with daemon(cfg, env=DEBUG) as s:
        open_doc(s, DOC)
        record = await one_record(s, 1, 4)
    assert record.startswith(f"inline {URI} 1:4: 0 items: "), record
    assert "a cap (inline.max_ms, max_tokens) cut it before its first line ended" in record


async def test_the_rule_that_emptied_the_answer_is_named(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """The provider answers with the line below the cursor: post-processing drops it, and the
    record names the rule."""
    fake.default = Reply.text(["return a + b"])
    chain = ["cloud"]
    cfg = make_config(
        tmp_path / "c.toml", tiny_model, {"cloud": ("openai", fake.openai_url)}, {"inline": chain}
    )
    async with daemon(cfg, env=ENV | DEBUG) as s:
        open_doc(s, "def add(a, b):\n    \n    return a + b\n")
        record = await one_record(s, 1, 4)
    assert ": 0 items: emptied by post-processing (" in record, record
    assert "duplicate_of_next_line" in record or "cut_at_suffix" in record, record


async def test_an_item_is_counted_without_a_reason(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    fake.default = Reply.text(["return a + b"])
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"inline": ["cloud"]},
    )
    async with daemon(cfg, env=ENV | DEBUG) as s:
        open_doc(s, DOC)
        record = await one_record(s, 1, 4)
    assert record == f"inline {URI} 1:4: 1 item", record


async def test_a_failed_generation_is_the_reason(tmp_path: Path, tiny_model: Path):
    """The only backend refuses the connection: the record carries the router's error."""
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", "http://127.0.0.1:9/v1")},  # discard port: refused
        {"inline": ["cloud"]},
    )
    async with daemon(cfg, env=ENV | DEBUG) as s:
        open_doc(s, DOC)
        record = await one_record(s, 1, 4)
    assert ": 0 items: the generation failed: " in record, record


async def test_a_language_switched_off_is_the_reason(tmp_path: Path, tiny_model: Path):
    cfg = write_config(
        tmp_path / "c.toml",
        f'[local]\nmodel = "{tiny_model}"\n[inline.languages.python]\nenabled = false\n',
    )
    async with daemon(cfg, env=DEBUG) as s:
        open_doc(s, DOC)
        record = await one_record(s, 1, 4)
    assert record.endswith(": 0 items: inline completion is off for language 'python'"), record


async def test_a_superseded_request_says_so(
    tmp_path: Path, tiny_model: Path, fake: FakeProvider
) -> None:
    """The provider never answers the first request; a second one for the same document
    supersedes it (max_ms long: the bound does not end the first one first)."""
    fake.enqueue(Reply.hang_before_headers())
    fake.default = Reply.text(["return a + b"])
    cfg = make_config(
        tmp_path / "c.toml",
        tiny_model,
        {"cloud": ("openai", fake.openai_url)},
        {"inline": ["cloud"]},
    )
    with cfg.open("a") as f:
        f.write("[inline]\nmax_ms = 20000\n")
    async with daemon(cfg, env=ENV | DEBUG) as s:
        open_doc(s, DOC)
        first = asyncio.ensure_future(inline(s, 1, 4, kind=2))
        while not fake.requests:  # the first request reached the provider
            await asyncio.sleep(0.02)
        await inline(s, 1, 3, kind=2)
        await first
        for _ in range(100):  # both records, each sent before its response
            if len(records(s)) >= 2:
                break
            await asyncio.sleep(0.02)
        got = records(s)
    assert len(got) == 2, got
    assert f"inline {URI} 1:3: 1 item" in got, got
    superseded = [r for r in got if r.startswith(f"inline {URI} 1:4: 0 items")]
    assert superseded and "superseded by a newer request for this document" in superseded[0], got
