"""The one trim of an inline request's text (issue #13): prompts.fit_window cuts it once, a
smaller window for the time cap is cut out of that one without measuring its lines again, and a
provider gets the same trim with a loose count (backends.messages.sized)."""

from __future__ import annotations

from mlxd.backends.messages import sized
from mlxd.prompts import COUNTS, MAX_TOKEN_CHARS, fit_window, loose_tokens, trim
from mlxd.types import Request

DOC = "".join(f"value_{n:04d} = compute({n}, {n + 1})\n" for n in range(3000))


class Counter:
    """A token counter (3 characters a token) that records what it was asked to measure."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, text: str) -> int:
        self.seen.append(text)
        return (len(text) + 2) // 3


def test_fit_window_is_one_counted_trim_and_narrowing_is_not_another() -> None:
    before = COUNTS["trims"]
    count = Counter()
    window = fit_window(count, DOC, "tail()\n" * 50, "# path: a.py\n", 512)
    assert COUNTS["trims"] - before == 1
    measured = len(count.seen)
    small = window.narrowed(100)
    assert COUNTS["trims"] - before == 1  # cut from the window: no second trim
    assert len(count.seen) == measured  # and not one line of it measured again
    assert DOC.endswith(small.prefix) and len(small.prefix) < len(window.prefix)
    assert window.suffix.startswith(small.suffix)


def test_a_narrowed_window_is_what_a_trim_to_that_budget_keeps() -> None:
    count = Counter()
    window = fit_window(count, DOC, "", "", 600)
    for budget in (48, 100, 300):
        assert window.narrowed(budget).prefix == trim(DOC, "", budget, count)[0], budget


def test_a_huge_line_is_never_measured_whole() -> None:
    count = Counter()
    line = "x" * 2_000_000
    window = fit_window(count, "a = 1\n" + line, line + "\nb = 2\n", "", 256)
    assert max(len(t) for t in count.seen) <= 256 * MAX_TOKEN_CHARS
    assert window.prefix and window.prefix.endswith("x")  # the cursor line, cut by characters


def inline(prefix: str, header: str = "", budget: int | None = 256) -> Request:
    return Request(
        kind="inline", prefix=prefix, suffix="rest()\n" * 400, header=header, context_tokens=budget
    )


def test_a_provider_gets_an_inline_request_trimmed_to_its_budget_header_included() -> None:
    header = "".join(f"# snippet line {n}\n" for n in range(100)) + "# path: p/a.py\n"
    before = COUNTS["trims"]
    sent = sized(inline(DOC, header))
    assert COUNTS["trims"] - before == 1
    pieces = (sent.header, sent.prefix, sent.suffix)
    assert sum(loose_tokens(p) for p in pieces) <= 256
    assert sum(len(p) for p in pieces) > 256 * 5 // 2  # most of the budget is used
    assert sent.header.endswith("# path: p/a.py\n") and DOC.endswith(sent.prefix)
    assert sent.context_tokens is None  # what the body is built from: trimmed, no budget left


def test_a_request_without_a_budget_goes_to_a_provider_as_it_is() -> None:
    before = COUNTS["trims"]
    complete = Request(kind="complete", prefix=DOC, suffix="x\n" * 9000)
    assert sized(complete) is complete
    assert sized(inline(DOC, budget=None)).prefix == DOC
    assert COUNTS["trims"] == before


def test_a_narrowed_window_keeps_its_header_whole_and_without_snippets_its_path_only() -> None:
    # Cut part-way, a header opened the prompt with part of a snippet that no KV cache held.
    header = "".join(f"# snippet line {n}\n" for n in range(30)) + "# path: p/a.py\n"
    window = fit_window(Counter(), DOC, "", header, 1024)
    assert window.header == header
    small = window.narrowed(384)
    assert small.header == header and small.prefix and DOC.endswith(small.prefix)
    bare = window.without_snippets()
    assert (bare.header, bare.prefix) == ("# path: p/a.py\n", window.prefix)
    assert len(bare.narrowed(384).prefix) > len(small.prefix)  # the room goes to the code
