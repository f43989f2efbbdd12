"""A document keeps its neighbour snippets while the lines above its cursor stay much the same
(inline/sticky.py): the snippets open the prompt, and a swap refills the model's KV cache."""

from __future__ import annotations

from mlxd.inline.sticky import StickySnippets
from mlxd.prompts import SnippetIndex

ME = "file:///p/main.py"


def window(prefix: str) -> str:
    return "\n".join(f"{prefix}_{i % 6} = {prefix}_{(i + 1) % 6} + {i}" for i in range(20)) + "\n"


DOCS = [("file:///p/other.py", "python", window("alpha") + window("beta"))]
BUDGET = len(window("alpha"))  # one window fits
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
