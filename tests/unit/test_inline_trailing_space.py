"""The prompt ends before the whitespace at the cursor; the model writes it again.

A BPE vocabulary glues a space to the word after it: a prompt ending in `-> ` forces a next
token without a leading space, which the embedded SmolLM2 answers with junk. Seen in
`make bench quality` on mlx_lm/models/lfm2.py (line 92, a hole after `) -> `): the model gave
`1:` where the file has `mx.array:`; without the trailing space in the prompt it writes
` mx.array:`. The same holds for an indentation-only line (`   ` + ` return`).
"""

from __future__ import annotations

from mlxd.config import InlineConfig
from mlxd.inline.engine import InlineEngine
from mlxd.inline.postprocess import clean, drop_trailing_space
from mlxd.prompts import CursorContext, context_at
from mlxd.types import Request

# The text above the hole, as mlx_lm/models/lfm2.py (mlx-lm 0.32.2) has it.
LFM2 = (
    "    def __call__(\n"
    "        self,\n"
    "        x: mx.array,\n"
    "        mask: Optional[mx.array] = None,\n"
    "        cache: Optional[Any] = None,\n"
    "    ) -> "
)
LFM2_AFTER = "\n        B, L, D = x.shape\n"


class Recorder:
    """The `generate` callable of the engine: records the request, answers `text`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[Request] = []

    async def __call__(self, request: Request, ctx: CursorContext) -> str:
        self.requests.append(request)
        return self.text


async def _complete(text: str, offset: int, answer: str) -> tuple[str, Request]:
    model = Recorder(answer)
    engine = InlineEngine(InlineConfig(), model)
    head = text[:offset]
    line, col = head.count("\n"), len(head) - head.rfind("\n") - 1
    items = await engine.complete(text, line, col, uri="file:///src/lfm2.py", language="python")
    return (items[0].insert_text if items else ""), model.requests[0]


async def test_the_prompt_stops_before_the_space_after_an_arrow() -> None:
    shown, request = await _complete(LFM2 + LFM2_AFTER, len(LFM2), " mx.array:\n")
    assert request.prefix.endswith("    ) ->")
    assert shown == "mx.array:"  # the space the model wrote is the one before the cursor


async def test_a_model_that_does_not_write_the_space_is_taken_as_is() -> None:
    shown, _ = await _complete(LFM2 + LFM2_AFTER, len(LFM2), "mx.array:\n")
    assert shown == "mx.array:"


async def test_an_indentation_only_line_is_left_to_the_model() -> None:
    # A blank line in the body being written: the cursor after its indentation.
    text = LFM2 + "mx.array:\n        \n"
    shown, request = await _complete(text, len(text) - 1, "        B, L, D = x.shape\n")
    assert request.prefix.endswith("mx.array:\n")
    assert shown == "B, L, D = x.shape"


async def test_tabs_too() -> None:
    text = "func main() {\n\tx := 1\n\t"
    shown, request = await _complete(text, len(text), "\treturn x\n")
    assert request.prefix.endswith("x := 1\n")
    assert shown == "return x"


def test_no_whitespace_before_the_cursor_changes_nothing() -> None:
    ctx = context_at("x = fo", 6)
    assert (ctx.trailing_space, ctx.prompt_prefix) == ("", "x = fo")
    assert clean(" o", ctx) == " o"  # a space the model means stays


def test_more_indentation_than_the_cursor_keeps_the_difference() -> None:
    assert drop_trailing_space("        x = 1", "    ") == "    x = 1"
    assert drop_trailing_space("  x = 1", "    ") == "x = 1"  # the cursor sits at 4 already
