"""The text around the cursor: the CursorContext of a position, and where a block begins.

Positions (LSP columns) are in positions.py, trimming to a budget in trim.py, neighbour
snippets in snippets.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .counts import COUNTS
from .positions import _EOL, Encoding, normalize_encoding, position_to_offset

# The end of a line that opens a block (Python's `:`, a bracket, `=>`, Ruby/Lua/shell words,
# a Lua `function name(args)` header): what follows is a body of several lines.
_BLOCK_OPENER = re.compile(
    r"(?:[:{\[(]|=>|\bdo|\bthen|\bbegin|\belse|\brepeat|\bfunction\s*[\w.:]*\s*\([^()]*\))\s*$"
)


@dataclass(slots=True)
class CursorContext:
    """Everything the prompt builder and the post-processor need to know about the cursor."""

    uri: str
    language: str
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor
    line_prefix: str  # the cursor line before the cursor
    line_suffix: str  # the cursor line after the cursor (no line terminator)
    indent: str  # leading whitespace of the cursor line (up to the cursor)
    single_line: bool  # something other than whitespace follows the cursor on its line
    # A comment header for the prompt (file path, neighbour snippets); see fim.file_header.
    header: str = ""
    # Lines with text the suggestion may hold (None: no limit but max_tokens / max_ms).
    max_lines: int | None = None

    @property
    def trailing_space(self) -> str:
        """The spaces and tabs right before the cursor on its line ("" if none).

        BPE vocabularies glue a space to the word after it (` mx`, `   ` + ` return`): a prompt
        that ends in whitespace forces the model's next token to start without one, a split it
        rarely saw in training, and it answers with junk (`-> ` gave `1:`). So the prompt ends
        before this whitespace and the model writes it again (`prompt_prefix`,
        postprocess.drop_trailing_space).
        """
        line = self.line_prefix
        return line[len(line.rstrip(" \t")) :]

    @property
    def prompt_prefix(self) -> str:
        """The prefix as the model sees it: without `trailing_space`."""
        return self.prefix[: len(self.prefix) - len(self.trailing_space)]


def context_at(text: str, offset: int, *, uri: str = "", language: str = "") -> CursorContext:
    """The CursorContext for a code-point offset (positions are converted by the caller)."""
    COUNTS["context_builds"] += 1
    offset = max(0, min(offset, len(text)))
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    eol = _EOL.search(text, offset)
    line_end = eol.start() if eol else len(text)
    line_prefix = text[line_start:offset]
    line_suffix = text[offset:line_end]
    indent = line_prefix[: len(line_prefix) - len(line_prefix.lstrip())]
    return CursorContext(
        uri=uri,
        language=language,
        prefix=text[:offset],
        suffix=text[offset:],
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        indent=indent,
        single_line=bool(line_suffix.strip()),
    )


def cursor_context(
    text: str,
    line: int,
    character: int,
    *,
    encoding: Encoding | str = "utf-16",
    uri: str = "",
    language: str = "",
) -> CursorContext:
    """The CursorContext for an LSP position (UTF-16 columns unless told otherwise)."""
    offset = position_to_offset(text, line, character, normalize_encoding(encoding))
    return context_at(text, offset, uri=uri, language=language)


def opens_block(line: str) -> bool:
    """Whether a line ends by opening a block (`def f():`, `{`, `if x then`, `function f(a)`):
    the lines below it, indented deeper, are its body."""
    return bool(_BLOCK_OPENER.search(line))


def starts_block(ctx: CursorContext) -> bool:
    """Whether the cursor is where a block's body begins: at the end of a line that opens a
    block, or on a blank line right below an opener. There a suggestion of several lines is
    what the user wants (a function body); anywhere else, the rest of one line or one
    statement. A header still being typed (`def add┃`, `for x in ite┃`) is anywhere else:
    its own line comes first (asked for as several lines, it ran to the time cap, and only
    its first line was shown; uncapped, a body was guessed before the header was known), and
    at its end, once accepted, the body is asked for."""
    if ctx.line_suffix.strip():
        return False
    line = ctx.line_prefix
    if not line.strip():  # a blank line: the last line above with text in it
        start = len(ctx.prefix) - len(ctx.line_prefix)  # the cursor line's start
        above = ctx.prefix[max(0, start - 4096) : start]  # enough to find it, in any document
        line = next((x for x in reversed(_EOL.split(above)) if x.strip()), "")
    return opens_block(line)
