"""The text around the cursor: LSP position -> string offset, prompt trimming, neighbour snippets.

LSP counts columns in UTF-16 code units unless the client negotiated another encoding, while a
Python string indexes code points: an emoji is 2 UTF-16 units but 1 code point, so a naive
`line[character:]` puts the cursor in the wrong place after the first emoji on a line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Literal

Encoding = Literal["utf-16", "utf-8", "utf-32"]
TokenCounter = Callable[[str], int]

# LSP knows exactly these three line terminators (not str.splitlines's \v, \f, \u2028, ...).
_EOL = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
# The prefix window starts on a line number that is a multiple of this, so that it stays put
# while the user types and the model's KV cache for the prompt's beginning can be reused.
SNAP_LINES = 8
# Share of the token budget given to the prefix; the model needs the lines above the cursor most.
PREFIX_SHARE = 0.75
# The end of a line that opens a block (Python's `:`, a bracket, `=>`, Ruby/Lua/shell words):
# what follows is a body of several lines.
_BLOCK_OPENER = re.compile(r"(?:[:{\[(]|=>|\bdo|\bthen|\bbegin)\s*$")
# A line being typed that will open one: a declaration or a compound statement's header.
_BLOCK_HEADER = re.compile(
    r"^\s*(?:(?:pub|export|async|static|private|public)\s+)*"
    r"(?:def|class|function|fn|func|if|elif|else|for|while|with|try|except|match|switch|impl|"
    r"struct|enum|interface|trait)\b"
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


def approx_tokens(text: str) -> int:
    """Token estimate when no tokenizer is at hand: about 3 characters a token, rounded up.

    Rounding up keeps a per-line sum from undercounting the whole.
    """
    return (len(text) + 2) // 3


# --- positions ----------------------------------------------------------------------------
def _units(ch: str, encoding: Encoding) -> int:
    """Code units one code point takes in the client's encoding."""
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    if encoding == "utf-8":
        return len(ch.encode("utf-8", "surrogatepass"))
    return 1


def _line_span(text: str, line: int) -> tuple[int, int]:
    """(start, end) offsets of a line's content, without its terminator; clamped to the text."""
    if line <= 0:
        start = 0
    else:
        found = next(islice(_EOL.finditer(text), line - 1, None), None)
        if found is None:  # past the last line: the end of the document
            return len(text), len(text)
        start = found.end()
    eol = _EOL.search(text, start)
    return start, eol.start() if eol else len(text)


def column_to_offset(line_text: str, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point index in `line_text` for an LSP column; past the end clamps to the end.

    A column inside a code point (half a surrogate pair) rounds down to that code point's start.
    """
    if encoding == "utf-32":
        return max(0, min(character, len(line_text)))
    used = 0
    for i, ch in enumerate(line_text):
        used += _units(ch, encoding)
        if used > character:
            return i
    return len(line_text)


def offset_to_column(line_text: str, offset: int, encoding: Encoding = "utf-16") -> int:
    """The LSP column of a code-point index in `line_text` (the inverse of column_to_offset)."""
    head = line_text[:offset]
    if encoding == "utf-32":
        return len(head)
    return sum(_units(ch, encoding) for ch in head)


def position_to_offset(text: str, line: int, character: int, encoding: Encoding = "utf-16") -> int:
    """Code-point offset in the whole document for an LSP position (clamped)."""
    start, end = _line_span(text, line)
    return start + column_to_offset(text[start:end], character, encoding)


def offset_to_position(text: str, offset: int, encoding: Encoding = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of a code-point offset in the whole document."""
    head = text[:offset]
    lines = _EOL.split(head)
    # A "\r" ending `head` may be the first half of "\r\n": still one terminator, already split.
    return len(lines) - 1, offset_to_column(lines[-1], len(lines[-1]), encoding)


def normalize_encoding(value: object) -> Encoding:
    """The encoding named by an LSP PositionEncodingKind, a plain string or an enum member.

    `str()` of lsprotocol's enum reads "PositionEncodingKind.Utf16", not "utf-16"; anything
    unrecognised is UTF-16, the LSP default.
    """
    name = str(getattr(value, "value", value)).lower()
    if "32" in name:
        return "utf-32"
    if "8" in name:
        return "utf-8"
    return "utf-16"


# --- the context --------------------------------------------------------------------------
def context_at(text: str, offset: int, *, uri: str = "", language: str = "") -> CursorContext:
    """The CursorContext for a code-point offset (positions are converted by the caller)."""
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


def starts_block(ctx: CursorContext) -> bool:
    """Whether the cursor is where a block's body begins: at the end of a line that opens a
    block or is a block's header being typed (`def add`), or on a blank line right below an
    opener. There a suggestion of several lines is what the user wants (a function body);
    anywhere else, the rest of one line or one statement."""
    if ctx.line_suffix.strip():
        return False
    line = ctx.line_prefix
    if _BLOCK_HEADER.match(line):
        return True
    if not line.strip():  # a blank line: the last line above with text in it
        start = len(ctx.prefix) - len(ctx.line_prefix)  # the cursor line's start
        above = ctx.prefix[max(0, start - 4096) : start]  # enough to find it, in any document
        line = next((x for x in reversed(_EOL.split(above)) if x.strip()), "")
    return bool(_BLOCK_OPENER.search(line))


# --- trimming to a token budget -----------------------------------------------------------
def _fit_lines(lines: Sequence[str], budget: int, count: TokenCounter) -> list[int]:
    """Token costs of the leading `lines` (taken in order) that fit in `budget` together.

    Lines are counted one by one (an overestimate when a tokenizer merges a newline with the
    next line's indentation, which is the safe side), and counting stops at the first line
    that does not fit, so a huge document costs no more than the budget to measure.
    """
    costs: list[int] = []
    used = 0
    for line in lines:
        cost = count(line)
        if used + cost > budget:
            break
        costs.append(cost)
        used += cost
    return costs


def _split_lines(text: str) -> list[str]:
    """Lines with their terminators kept; only LSP's \\n, \\r\\n and \\r end a line."""
    return [line for line in _LINE.findall(text) if line]


def _keep_end(text: str, budget: int, count: TokenCounter) -> str:
    """The longest-ish tail of one long line that fits in `budget` (a character cut)."""
    while text and count(text) > budget:
        ratio = budget / max(1, count(text))
        keep = min(len(text) - 1, math.floor(len(text) * ratio * 0.9))
        text = text[len(text) - max(0, keep) :]
    return text


def _keep_start(text: str, budget: int, count: TokenCounter) -> str:
    """The longest-ish head of one long line that fits in `budget` (a character cut)."""
    while text and count(text) > budget:
        ratio = budget / max(1, count(text))
        text = text[: min(len(text) - 1, math.floor(len(text) * ratio * 0.9))]
    return text


def _trim_prefix(prefix: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """Keep the end of the prefix: whole lines, starting on a SNAP_LINES multiple."""
    lines = _split_lines(prefix)
    if not lines:
        return "", 0
    costs = _fit_lines(lines[::-1], budget, count)
    if len(costs) == len(lines):
        return prefix, sum(costs)
    if not costs:  # even the cursor line is too long: cut it by characters
        tail = _keep_end(lines[-1], budget, count)
        return tail, count(tail)
    first = len(lines) - len(costs)
    snapped = min(-(-first // SNAP_LINES) * SNAP_LINES, len(lines) - 1)
    return "".join(lines[snapped:]), sum(costs[: len(lines) - snapped])


def _trim_suffix(suffix: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """Keep the start of the suffix in whole lines, a SNAP_LINES multiple of them when cut."""
    lines = _split_lines(suffix)
    if not lines or budget <= 0:
        return "", 0
    costs = _fit_lines(lines, budget, count)
    if not costs:
        head = _keep_start(lines[0], budget, count)
        return head, count(head)
    kept = len(costs)
    if kept < len(lines) and kept > SNAP_LINES:  # snapped too: the end moves less often
        kept -= kept % SNAP_LINES
    return "".join(lines[:kept]), sum(costs[:kept])


def trim(
    prefix: str,
    suffix: str,
    budget_tokens: int,
    count_tokens: TokenCounter | None = None,
) -> tuple[str, str]:
    """Trim prefix and suffix to `budget_tokens`, keeping the text nearest the cursor.

    The prefix gets about 3/4 of the budget and the suffix the rest; a side that needs less
    leaves its share to the other. Cuts fall on line boundaries (a half line confuses the
    model more than a missing one) and snap to SNAP_LINES: the prefix window starts on a line
    number that is a multiple of it, the suffix keeps a multiple of it, so neither edge moves
    on every keystroke (the prompt's beginning stays the same: KV-cache reuse).
    """
    count = count_tokens or approx_tokens
    budget = max(0, budget_tokens)
    prefix_share = math.floor(budget * PREFIX_SHARE) if suffix else budget
    new_suffix, suffix_used = _trim_suffix(suffix, budget - prefix_share, count)
    new_prefix, prefix_used = _trim_prefix(prefix, budget - suffix_used, count)
    if new_suffix != suffix:  # the prefix may have left room: give it to the suffix
        new_suffix, _ = _trim_suffix(suffix, budget - prefix_used, count)
    return new_prefix, new_suffix


# --- neighbour snippets -------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
SNIPPET_LINES = 20


@dataclass(frozen=True, slots=True)
class Snippet:
    uri: str
    text: str


def _identifiers(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def _windows(text: str, size: int) -> Iterable[str]:
    """Non-overlapping windows of `size` lines (the unit a snippet is picked in)."""
    lines = text.splitlines()
    for i in range(0, len(lines), size):
        window = "\n".join(lines[i : i + size]).strip("\n")
        if window.strip():
            yield window


def neighbor_snippets(
    docs: Iterable[tuple[str, str, str]],
    language: str,
    budget_chars: int,
    *,
    near: str = "",
    exclude_uri: str = "",
) -> list[Snippet]:
    """Short snippets from other open documents of the same language, best first.

    `docs` is (uri, language, text) for each open document. With `near` (text around the
    cursor), windows are ranked by how many identifiers they share with it (Jaccard), the
    cheap signal Copilot-style "neighbouring tabs" use; without it, each file's head (imports,
    definitions) is taken. Pass a `near` that does not change on every keystroke (e.g. the
    prefix without its last line): the snippets open the prompt, and a changing opening
    defeats the KV cache.
    """
    if budget_chars <= 0:
        return []
    wanted = _identifiers(near)
    scored: list[tuple[float, int, Snippet]] = []
    for order, (uri, lang, text) in enumerate(docs):
        if lang != language or uri == exclude_uri or not text.strip():
            continue
        for window in _windows(text, SNIPPET_LINES):
            if wanted:
                have = _identifiers(window)
                score = len(wanted & have) / len(wanted | have) if have else 0.0
                if score == 0.0:
                    continue
            else:
                score = 0.0
            scored.append((score, order, Snippet(uri, window)))
            if not wanted:
                break  # one head per file
    scored.sort(key=lambda item: (-item[0], item[1]))
    picked: list[Snippet] = []
    left = budget_chars
    for _, _, snippet in scored:
        if len(snippet.text) <= left:
            picked.append(snippet)
            left -= len(snippet.text)
    return picked
