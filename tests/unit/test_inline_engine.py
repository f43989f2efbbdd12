"""The inline engine with a real async `generate`: cache, supersession, settings, items."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from lsprotocol.types import PositionEncodingKind

from mlxd.config import InlineConfig, LanguageConfig
from mlxd.inline.engine import InlineEngine, InlineItem
from mlxd.prompts import CursorContext
from mlxd.types import Request

URI = "file:///proj/src/app.py"
EMOJI = "\U0001f600"


class Model:
    """A stand-in for the router: records calls, answers from a script, can be held back."""

    def __init__(self, answer: Callable[[Request, CursorContext], str] | str = "") -> None:
        self.answer = answer
        self.calls: list[tuple[Request, CursorContext]] = []
        self.cancelled: list[Request] = []
        self.gate: asyncio.Event | None = None  # when set, each call waits for it
        self.started = asyncio.Event()

    async def __call__(self, request: Request, ctx: CursorContext) -> str:
        self.calls.append((request, ctx))
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append(request)
            raise
        if isinstance(self.answer, str):
            return self.answer
        return self.answer(request, ctx)


def engine(model: Model, **cfg: object) -> InlineEngine:
    return InlineEngine(InlineConfig(**cfg), model)  # type: ignore[arg-type]


# --- the basic path -----------------------------------------------------------------------
async def test_generates_cleans_and_returns_an_item_at_the_cursor() -> None:
    model = Model("(a, b):\n    return a + b\n\n\nprint('x')")
    eng = engine(model)
    items = await eng.complete("def add\n", 0, 7, uri=URI, language="python")
    # A header being typed: the rest of its line (its body is asked for at its end).
    assert items == [InlineItem("(a, b):", (0, 7, 0, 7))]
    ((request, ctx),) = model.calls
    assert request.max_lines == 1
    assert request.kind == "inline"
    assert (request.prefix, request.suffix, request.language) == ("def add", "\n", "python")
    assert (request.max_tokens, request.temperature, request.stop) == (64, 0.0, [])
    assert request.max_time_s == 1.5  # inline.max_ms
    assert ctx.header == request.header == "# path: src/app.py\n"


async def test_range_is_in_utf16_units_after_an_emoji() -> None:
    model = Model("rint(s)")
    text = f"s = '{EMOJI}'\np"
    items = await engine(model).complete(text, 1, 1, uri=URI, language="python")
    assert items[0].range == (1, 1, 1, 1)
    text = f"s = '{EMOJI}' + p"
    items = await engine(Model("x")).complete(text, 0, 99, uri=URI, language="python")
    assert items[0].range == (0, 12, 0, 12)  # clamped to the line end, in UTF-16 units


@pytest.mark.parametrize(
    ("encoding", "column"),
    [
        (PositionEncodingKind.Utf16, 7),
        (str(PositionEncodingKind.Utf16), 7),  # "PositionEncodingKind.Utf16"
        (PositionEncodingKind.Utf8, 9),
        (str(PositionEncodingKind.Utf32), 6),
    ],
)
async def test_negotiated_position_encoding_in_any_spelling(encoding: object, column: int) -> None:
    model = Model("x")
    text = f"s = '{EMOJI}' + t"
    items = await engine(model).complete(
        text, 0, column, uri=URI, language="python", encoding=encoding
    )  # type: ignore[arg-type]
    assert model.calls[0][1].line_prefix == f"s = '{EMOJI}"
    assert items[0].range == (0, column, 0, column)


async def test_mid_line_cursor_asks_for_a_single_line() -> None:
    model = Model("values)\nprint(total)")
    items = await engine(model).complete("total = sum()\n", 0, 12, uri=URI, language="python")
    assert model.calls[0][0].stop == ["\n"]
    assert [i.insert_text for i in items] == ["values"]


@pytest.mark.parametrize(
    ("text", "line", "column", "several"),
    [
        ("def add(a, b):", 0, 14, True),  # the end of a line that opens a block
        ("if ready:\n    ", 1, 4, True),  # a blank line right below one
        ("const f = () => {\n\n  ", 2, 2, True),  # blank lines between do not matter
        ("def add", 0, 7, False),  # a block's header being typed: its line first
        ("    for item in ite", 0, 19, False),
        ("def add(a, b):\n    return a\n\nclass Abstr", 3, 11, False),
        ("total = 0", 0, 9, False),  # the end of a statement: the next one, alone
        ("total = 0\n    ", 1, 4, False),  # a blank line below a statement
        ("", 0, 0, False),
    ],
)
async def test_several_lines_only_where_a_block_starts(
    text: str, line: int, column: int, several: bool
) -> None:
    """Elsewhere a suggestion is the rest of the line or the next statement: the generation
    stops at the end of its first line with text in it (fast), and only that line is shown."""
    model = Model("\n\n    x = 1\n    y = 2\n")
    items = await engine(model).complete(text, line, column, uri=URI, language="python")
    request = model.calls[0][0]
    assert request.max_lines == (None if several else 1)
    assert request.stop == []
    shown = items[0].insert_text.strip("\n").split("\n")
    assert len(shown) == (2 if several else 1), items


@pytest.mark.parametrize(("mode", "max_lines"), [("always", None), ("never", 1), ("auto", 1)])
async def test_multi_line_setting(mode: str, max_lines: int | None) -> None:
    model = Model("\nx = 1\ny = 2")
    items = await engine(model, multi_line=mode).complete(
        "total = 0", 0, 9, uri=URI, language="python"
    )
    assert model.calls[0][0].max_lines == max_lines
    assert items[0].insert_text == ("\nx = 1\ny = 2" if max_lines is None else "\nx = 1")


async def test_language_setting_forces_single_line() -> None:
    model = Model("\n    return 1")
    eng = engine(model, languages={"python": LanguageConfig(single_line=True)})
    items = await eng.complete("def f():", 0, 8, uri=URI, language="python")
    assert model.calls[0][0].stop == ["\n"]
    assert items == []


async def test_disabled_language_returns_nothing_without_generating() -> None:
    model = Model("anything")
    eng = engine(model, languages={"markdown": LanguageConfig(enabled=False)})
    assert await eng.complete("# Title\n", 1, 0, uri="file:///r.md", language="markdown") == []
    assert model.calls == []
    assert await engine(model, enabled=False).complete("x", 0, 1, uri=URI, language="python") == []
    assert model.calls == []


async def test_request_carries_the_whole_context_and_its_budget_untrimmed() -> None:
    # The backend that serves it trims it, once (issue #13): the engine does not pre-trim.
    model = Model("0")
    text = "".join(f"x{i} = {i}\n" for i in range(20_000)) + "y = "
    eng = engine(model, context_tokens=256)
    await eng.complete(text, 20_000, 4, uri=URI, language="python")
    request, ctx = model.calls[0]
    assert request.context_tokens == 256
    assert request.prefix == text[:-1]
    # The prompt ends before the space at the cursor (the model writes it: ctx.trailing_space).
    assert request.prefix.endswith("x19999 = 19999\ny =")
    assert ctx.prefix == text


# --- cache --------------------------------------------------------------------------------
async def test_typing_through_a_suggestion_never_calls_the_model() -> None:
    model = Model("oo(x):")
    eng = engine(model)
    doc = "def f\n"
    assert (await eng.complete(doc, 0, 5, uri=URI, language="python"))[0].insert_text == "oo(x):"
    for typed, rest in [("o", "o(x):"), ("oo", "(x):"), ("oo(", "x):"), ("oo(x)", ":")]:
        text = "def f" + typed + "\n"
        col = 5 + len(typed)
        items = await eng.complete(text, 0, col, uri=URI, language="python")
        assert items == [InlineItem(rest, (0, col, 0, col))]
    assert len(model.calls) == 1
    assert eng.stats.cache_hits == 4 and eng.stats.generations == 1


async def test_typing_past_the_suggestion_asks_the_model_again() -> None:
    model = Model("oo")
    eng = engine(model)
    await eng.complete("def f", 0, 5, uri=URI, language="python")
    await eng.complete("def foo", 0, 7, uri=URI, language="python")
    assert len(model.calls) == 2


async def test_nothing_good_is_remembered_for_that_position() -> None:
    model = Model("   ")
    eng = engine(model)
    assert await eng.complete("x = ", 0, 4, uri=URI, language="python") == []
    assert await eng.complete("x = ", 0, 4, uri=URI, language="python") == []
    assert len(model.calls) == 1


async def test_a_failed_generation_is_not_cached() -> None:
    def fail(request: Request, ctx: CursorContext) -> str:
        raise ConnectionError("backend down")

    model = Model(fail)
    eng = engine(model)
    assert await eng.complete("x = ", 0, 4, uri=URI, language="python") == []
    assert await eng.complete("x = ", 0, 4, uri=URI, language="python") == []
    assert len(model.calls) == 2
    assert eng.stats.errors == 2


# --- supersession and cancellation --------------------------------------------------------
async def test_a_newer_request_for_the_document_cancels_the_older_generation() -> None:
    model = Model("1")
    model.gate = asyncio.Event()
    eng = engine(model)
    older = asyncio.ensure_future(eng.complete("x = ", 0, 4, uri=URI, language="python"))
    await model.started.wait()
    newer = asyncio.ensure_future(eng.complete("x = 2", 0, 5, uri=URI, language="python"))
    assert await older == []  # superseded: an empty answer, not an error
    assert [r.prefix for r in model.cancelled] == ["x ="]  # the prompt ends before the space
    model.gate.set()
    assert (await newer)[0].insert_text == "1"
    assert eng.stats.cancelled == 1


async def test_requests_for_other_documents_do_not_supersede_each_other() -> None:
    model = Model("1")
    model.gate = asyncio.Event()
    eng = engine(model)
    a = asyncio.ensure_future(eng.complete("x = ", 0, 4, uri=URI, language="python"))
    await model.started.wait()
    b = asyncio.ensure_future(eng.complete("y = ", 0, 4, uri="file:///b.py", language="python"))
    await asyncio.sleep(0.01)
    model.gate.set()
    assert [len(await a), len(await b)] == [1, 1]
    assert model.cancelled == []


async def test_client_cancellation_stops_the_generation_and_propagates() -> None:
    model = Model("1")
    model.gate = asyncio.Event()
    eng = engine(model)
    call = asyncio.ensure_future(eng.complete("x = ", 0, 4, uri=URI, language="python"))
    await model.started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(model.cancelled) == 1
    assert eng.stats.cancelled == 1


async def test_forget_stops_the_documents_generation() -> None:
    model = Model("1")
    model.gate = asyncio.Event()
    eng = engine(model)
    call = asyncio.ensure_future(eng.complete("x = ", 0, 4, uri=URI, language="python"))
    await model.started.wait()
    eng.forget(URI)
    assert await call == []
    assert len(model.cancelled) == 1


# --- selectedCompletionInfo ---------------------------------------------------------------
async def test_selected_completion_item_is_extended_and_its_range_used() -> None:
    model = Model("(2)\n")
    eng = engine(model)
    text = "import math\nx = math.sq\n"
    selected_range = (1, 9, 1, 11)  # "sq", to be replaced by the popup's "sqrt"
    items = await eng.complete(
        text,
        1,
        11,
        uri=URI,
        language="python",
        selected_text="sqrt",
        selected_range=selected_range,
    )
    assert model.calls[0][1].prefix == "import math\nx = math.sqrt"
    assert items == [InlineItem("sqrt(2)", selected_range)]


# --- header -------------------------------------------------------------------------------
NEIGHBORS = [
    ("file:///proj/src/util.py", "python", "def parse_header(line):\n    return line\n"),
    ("file:///proj/src/x.js", "javascript", "function parse_header(line) {}\n"),
]


async def test_neighbour_snippets_go_into_the_header_when_enabled() -> None:
    model = Model("x")
    text = "for line in lines:\n    key = parse_header(line)\n    "
    await engine(model).complete(text, 2, 4, uri=URI, language="python", neighbors=NEIGHBORS)
    header = model.calls[0][1].header
    assert header.startswith("# Compare this snippet from src/util.py:\n# def parse_header")
    assert header.endswith("# path: src/app.py\n")
    assert "function" not in header

    model = Model("x")
    eng = engine(model, neighbor_snippets=False)
    await eng.complete(text, 2, 4, uri=URI, language="python", neighbors=NEIGHBORS)
    assert model.calls[0][1].header == "# path: src/app.py\n"


async def test_snapshot_reports_the_counters() -> None:
    eng = engine(Model("1"))
    await eng.complete("x = ", 0, 4, uri=URI, language="python")
    await eng.complete("x = ", 0, 4, uri=URI, language="python")
    snap = eng.snapshot()
    assert (snap["requests"], snap["generations"], snap["cache_hits"]) == (2, 1, 1)
    assert snap["cache_misses"] == 1


# --- cut generations: never a fragment ----------------------------------------------------------
class Cut:
    """What the router returns: the text and why it ended."""

    def __init__(self, text: str, finish_reason: str) -> None:
        self.text, self.finish_reason = text, finish_reason


@pytest.mark.parametrize(
    ("raw", "finish", "shown"),
    [
        ("wh", "length", []),  # a piece of a word, cut by the time cap: nothing
        (" =", "length", []),  # a lone operator
        ("\n    return a +", "length", []),  # the block's first line unfinished
        ("\n    x = 1\n    y = fo", "length", ["\n    x = 1"]),  # the finished line only
        ("wh", "stop", ["wh"]),  # the model ended there: a complete unit
    ],
)
async def test_a_cut_last_line_is_never_shown(raw: str, finish: str, shown: list[str]) -> None:
    eng = engine(Model(lambda r, c: Cut(raw, finish)))  # type: ignore[arg-type,return-value]
    items = await eng.complete("def f(a):\n", 0, 9, uri=URI, language="python")
    assert [i.insert_text for i in items] == shown
    assert eng.stats.fragments == 0


@pytest.mark.parametrize(
    ("raw", "whole_lines", "shown", "fragments"),
    [
        # The kept line ends like the cut one ("y"): shown is whole, no fragment.
        ("x = y\ny", True, ["x = y"], 0),
        ("\n    return a\n    a", True, ["\n    return a"], 0),
        # Cut text shown on purpose (whole_lines off): a fragment, counted.
        ("wh", False, ["wh"], 1),
        ("x = 1\ny = fo", False, ["x = 1\ny = fo"], 1),
    ],
)
async def test_the_fragment_counter_counts_what_is_shown(
    raw: str, whole_lines: bool, shown: list[str], fragments: int
) -> None:
    model = Model(lambda r, c: Cut(raw, "length"))  # type: ignore[arg-type,return-value]
    eng = engine(model, whole_lines=whole_lines, multi_line="always")
    items = await eng.complete("def f(a):\n", 1, 0, uri=URI, language="python")
    assert [i.insert_text for i in items] == shown
    assert eng.stats.fragments == fragments


async def test_a_cut_that_left_nothing_is_asked_again() -> None:
    answers = iter([Cut("wh", "length"), Cut("while True:", "stop")])
    model = Model(lambda r, c: next(answers))  # type: ignore[arg-type,return-value]
    eng = engine(model)
    assert await eng.complete("x = 1\n", 1, 0, uri=URI, language="python") == []
    items = await eng.complete("x = 1\n", 1, 0, uri=URI, language="python")
    assert [i.insert_text for i in items] == ["while True:"]
    assert len(model.calls) == 2


# --- several candidates when the user asks --------------------------------------------------------
async def test_invoked_adds_distinct_sampled_alternatives() -> None:
    sampled = iter(["total += x", "  total = 0  "])  # the second is the greedy one again

    def answer(request: Request, ctx: CursorContext) -> str:
        return "total = 0" if request.temperature == 0 else next(sampled)

    model = Model(answer)
    eng = engine(model)
    items = await eng.complete("def f(xs):\n    ", 1, 4, uri=URI, language="python", invoked=True)
    assert [i.insert_text for i in items] == ["total = 0", "total += x"]
    assert [r.temperature for r, _ in model.calls] == [0.0, 0.8, 0.8]


async def test_automatic_requests_get_one_item() -> None:
    model = Model("total = 0")
    items = await engine(model).complete("def f(xs):\n    ", 1, 4, uri=URI, language="python")
    assert [i.insert_text for i in items] == ["total = 0"]
    assert len(model.calls) == 1


async def test_invoked_samples_no_alternatives_after_a_cloud_answer() -> None:
    # Alternatives reuse a local answer's KV cache; from a provider they would be paid requests.
    model = Model("total = 0")
    eng = engine(model)
    eng.served_locally = lambda answer: False
    items = await eng.complete("def f(xs):\n    ", 1, 4, uri=URI, language="python", invoked=True)
    assert [i.insert_text for i in items] == ["total = 0"]
    assert len(model.calls) == 1


async def test_invoked_after_a_cached_item_still_samples_alternatives() -> None:
    # VS Code's usual flow: typing shows a ghost (automatic), then the user asks for more
    # (Alt+] / Trigger Inline Suggestion). The item comes from the cache; cycling showed 1/1.
    sampled = iter(["total += x", "total = sum(xs)"])

    def answer(request: Request, ctx: CursorContext) -> str:
        return "total = 0" if request.temperature == 0 else next(sampled)

    model = Model(answer)
    eng = engine(model)
    doc = ("def f(xs):\n    ", 1, 4)
    assert len(await eng.complete(*doc, uri=URI, language="python")) == 1
    items = await eng.complete(*doc, uri=URI, language="python", invoked=True)
    assert [i.insert_text for i in items] == ["total = 0", "total += x", "total = sum(xs)"]
    assert [r.temperature for r, _ in model.calls] == [0.0, 0.8, 0.8]  # the first from cache


async def test_invoked_after_a_cached_item_samples_nothing_when_the_cloud_comes_first() -> None:
    model = Model("total = 0")
    eng = engine(model)
    eng.local_first = lambda uri: False
    doc = ("def f(xs):\n    ", 1, 4)
    await eng.complete(*doc, uri=URI, language="python")
    items = await eng.complete(*doc, uri=URI, language="python", invoked=True)
    assert [i.insert_text for i in items] == ["total = 0"] and len(model.calls) == 1
