"""A document keeps its neighbour snippets while the lines above its cursor stay much the same
(inline/sticky.py): the snippets open the prompt, and a swap refills the model's KV cache."""

from __future__ import annotations

from mlxd.config import InlineConfig
from mlxd.inline.engine import InlineEngine
from mlxd.inline.sticky import StickySnippets
from mlxd.prompts import SnippetIndex
from tests.kit import STDLIB, open_files

ME = "file:///p/main.py"


def window(prefix: str) -> str:
    return "\n".join(f"{prefix}_{i % 6} = {prefix}_{(i + 1) % 6} + {i}" for i in range(20)) + "\n"


DOCS = [("file:///p/other.py", "python", window("alpha") + window("beta"))]
BUDGET = len(window("alpha"))  # one window fits
LINES = 25  # lines typed (2 a request) in the replay below
OWN = " ".join(f"item_{i} record_{i}" for i in range(40)) + " alpha_0 alpha_1 alpha_2"


def texts(snippets) -> list[str]:
    return [s.text.split("_")[0] for s in snippets]


def test_a_few_new_words_keep_the_pick_that_a_fresh_one_would_swap() -> None:
    sticky, index = StickySnippets(SnippetIndex()), SnippetIndex()
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, OWN)) == ["alpha"]
    near = OWN + " beta_0 beta_1 beta_2 beta_3 beta_4"
    fresh = index.snippets(DOCS, "python", BUDGET, near=near, exclude_uri=ME)
    assert texts(fresh) == ["beta"]  # what the request alone would pick
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, near)) == ["alpha"]


def test_the_pick_is_made_again_when_the_words_or_the_neighbours_change() -> None:
    sticky = StickySnippets(SnippetIndex())
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, OWN)) == ["alpha"]
    # Most words near the cursor are new: a fresh pick.
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, "beta_0 beta_1 total")) == ["beta"]
    sticky = StickySnippets(SnippetIndex())
    sticky.pick(ME, DOCS, "python", BUDGET, OWN)
    # A neighbour changed (a new index generation): a fresh pick from its new text.
    changed = [(DOCS[0][0], "python", window("gamma") + window("beta"))]
    near = OWN + " beta_0 beta_1 beta_2 beta_3 beta_4"
    assert texts(sticky.pick(ME, changed, "python", BUDGET, near)) == ["beta"]
    # A forgotten document (didClose): fresh as well.
    sticky.forget(ME)
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, OWN)) == ["alpha"]


def test_words_drifting_as_the_user_types_on_keep_a_pick_still_as_relevant() -> None:
    # Lines typed in one place bring new words (handler_7, value_7): compared with the words of
    # the pick's time only, the pick was made again every few lines, to a window no better.
    sticky, index = StickySnippets(SnippetIndex()), SnippetIndex()
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, OWN)) == ["alpha"]
    typed = " ".join(f"handler_{i} value_{i}" for i in range(15))
    near = f"{OWN} {typed} beta_0 beta_1 beta_2 beta_3"
    fresh = index.snippets(DOCS, "python", BUDGET, near=near, exclude_uri=ME)
    assert texts(fresh) == ["beta"]  # a hair better than alpha: not worth a refill
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, near)) == ["alpha"]
    # A neighbour opened that matches no better: the pick stays too.
    more = [*DOCS, ("file:///p/third.py", "python", window("gamma"))]
    assert texts(sticky.pick(ME, more, "python", BUDGET, near + " gamma_0")) == ["alpha"]


def test_a_pick_far_less_relevant_than_a_fresh_one_is_made_again() -> None:
    sticky = StickySnippets(SnippetIndex())
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, OWN)) == ["alpha"]
    typed = " ".join(f"handler_{i} value_{i}" for i in range(15))
    beta = " ".join(f"beta_{i}" for i in range(6))
    # alpha's 3 shared words against beta's 6: under half as relevant.
    assert texts(sticky.pick(ME, DOCS, "python", BUDGET, f"{OWN} {typed} {beta}")) == ["beta"]


def test_a_held_snippet_whose_document_closed_or_changed_under_it_is_dropped() -> None:
    alpha = ("file:///p/a.py", "python", window("alpha"))
    beta = ("file:///p/b.py", "python", window("beta"))
    sticky = StickySnippets(SnippetIndex())
    near = OWN + " beta_0"
    assert texts(sticky.pick(ME, [alpha, beta], "python", BUDGET, near)) == ["alpha"]
    assert texts(sticky.pick(ME, [beta], "python", BUDGET, near)) == ["beta"]  # closed
    sticky = StickySnippets(SnippetIndex())
    assert texts(sticky.pick(ME, [alpha, beta], "python", BUDGET, near)) == ["alpha"]
    edited = (alpha[0], "python", window("alpha").replace("+ 3", "+ 33"))
    got = sticky.pick(ME, [edited, beta], "python", BUDGET, near)
    assert [s.text for s in got] == [edited[2].strip("\n")]  # its new text, not the old


def test_typing_new_lines_in_one_place_keeps_the_prompt_header() -> None:
    # bench open-files' replay: a new `def` line typed at the end of a file, LINES times, with
    # six files of the same language open. Each new header is a full refill of the prompt.
    engine = InlineEngine(InlineConfig(), _never)
    docs = open_files()
    text = (STDLIB.parent / "json" / "decoder.py").read_text(encoding="utf-8")[:3000]
    text = text[: text.rfind("\n") + 1]
    headers = []
    for n in range(1, LINES + 1):
        text += f"\ndef handler_{n}(request, value_{n}):\n    result = "
        ctx = engine.context_for(text, len(text), "file:///p/app.py", "python")
        headers.append(engine._header(ctx, docs))
    assert "Compare this snippet" in headers[0]
    assert len(set(headers)) == 1, [i for i in range(1, LINES) if headers[i] != headers[i - 1]]


async def _never(request: object, ctx: object) -> str:
    raise AssertionError("no generation in this test")
