"""Clean a raw model completion before it is shown as ghost text.

Small models, and models that never see the suffix (no FIM), happily re-type what follows the
cursor, run past the end of the block, loop, or close a bracket the editor already closed.
Each rule below is one small function so it can be tested on crafted outputs; `clean` applies
them in order. Completions use "\\n" line breaks (the model's), whatever the document uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..models import StopPolicy
from ..prompts import CursorContext, opens_block

# Each closing bracket with its opening one.
_OPENER_OF = {")": "(", "]": "[", "}": "{"}
_OPENERS = frozenset(_OPENER_OF.values())
_CLOSERS = frozenset(_OPENER_OF)
_QUOTES = "\"'`"
# A line that closes a block in Lua, Ruby, shell (`end`, `until x`, `fi`, `done`, `esac`).
_CLOSING_WORD = re.compile(r"(?:end|until|fi|done|esac)\b")
# Longest run of lines checked for a loop (the same n lines twice in a row).
MAX_LOOP_LINES = 4
# A loop inside a line: a piece of 3-40 characters three times in a row, with a letter and an
# assignment or a sum in it (`fib_res = fib_res = fib_res = `, Lua's `.. w.path .. ":" .. w.path
# .. ":" ...`, `count + count + count + `). Lists, type arguments, attribute chains, escapes and
# format strings repeat pieces in real code and are left alone: `(None, None, None, None)`,
# `tuple[int, int, int, int]`, `.parent.parent.parent`, `%s, %s, %s`, `\x00\x00\x00`.
_STUTTER = re.compile(r"(?=(.{3,40}?)\1\1)")  # at every position: matches may overlap
_LOOPING = re.compile(r"=| \+ |\.\.")  # not a regex's `\d+` or a literal's `0.+0.j`
# Characters of the text before the cursor that a loop reaching past the cursor can start in.
_STUTTER_REACH = 3 * 40
TAB_WIDTH = 4


# --- helpers ------------------------------------------------------------------------------
def _width(line: str) -> int:
    """Indentation width of a line, tabs counted as TAB_WIDTH columns."""
    lead = line[: len(line) - len(line.lstrip())]
    return len(lead.expandtabs(TAB_WIDTH))


def _match_brackets(text: str) -> dict[int, int | None]:
    """For each closing bracket in `text`, the index of its opener (None: opened before `text`).

    Quotes are not tracked: completions are short and a bracket inside a string literal is
    rare enough not to be worth a tokenizer per language.
    """
    stack: list[int] = []
    pairs: dict[int, int | None] = {}
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            stack.append(i)
        elif ch in _CLOSERS:
            if stack and text[stack[-1]] == _OPENER_OF[ch]:
                pairs[i] = stack.pop()
            else:
                pairs[i] = None
    return pairs


def _next_line(ctx: CursorContext) -> str:
    """The first non-blank document line below the cursor line ("" if none)."""
    suffix = ctx.suffix
    pos = suffix.find("\n")
    while pos != -1:
        end = suffix.find("\n", pos + 1)
        line = suffix[pos + 1 : end if end != -1 else len(suffix)].rstrip("\r")
        if line.strip():
            return line
        pos = end
    return ""


def _previous_line(ctx: CursorContext) -> str:
    """The document line above the cursor line ("" at the top)."""
    head = ctx.prefix[: len(ctx.prefix) - len(ctx.line_prefix)]
    head = head[:-2] if head.endswith("\r\n") else head[:-1]
    return head[max(head.rfind("\n"), head.rfind("\r")) + 1 :]


# --- the rules ----------------------------------------------------------------------------
# What an editor would not show as code: C0 controls but tab and newline, DEL, C1 controls, and
# U+FFFD (the detokenizer's mark for bytes that were no UTF-8). A lone "\r" is a line break to
# VS Code but "^M" to Neovim, so every line break becomes "\n" first.
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


def plain_text(text: str) -> str:
    """`text` with "\n" as its only line break and without characters no editor shows as code
    (a random or broken model writes them; VS Code split an item at a lone "\r")."""
    return _UNSHOWABLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def drop_trailing_space(text: str, space: str) -> str:
    """The completion from the cursor on, when the prompt ended before the whitespace that
    precedes the cursor (CursorContext.trailing_space): the model wrote it again, or it did
    not (then the cursor already sits after it, and leading blanks would double it)."""
    if not space:
        return text
    if text.startswith(space):
        return text[len(space) :]
    return text.lstrip(" \t")


def strip_trailing_whitespace(text: str, keep_end: bool = False) -> str:
    """Strip trailing whitespace on each line and trailing blank lines (ghost text shows them).

    `keep_end` keeps the very end as is: mid-line, the completion runs into the rest of the
    line, and `x = a + ┃y` needs the space in "a + ".
    """
    lines = text.split("\n")
    end = lines[-1]
    lines = [line.rstrip() for line in lines]
    if keep_end:
        lines[-1] = end
        return "\n".join(lines)
    return "\n".join(lines).rstrip("\n")


def _drop_is_safe(text: str, k: int) -> bool:
    """Whether the last `k` characters can go without unbalancing the rest.

    A closer in the tail must close something opened before the completion or inside the tail
    itself (`print(|)` + "foo()" keeps its ")"); a quote in the tail must close a string opened
    before the completion (an even count of it in the part that stays).
    """
    start = len(text) - k
    pairs = _match_brackets(text)
    for i in range(start, len(text)):
        opener = pairs.get(i, -1)
        if opener is not None and opener != -1 and opener < start:
            return False
        if text[i] in _QUOTES and text[:start].count(text[i]) % 2 == 1:
            return False
    return True


def cut_at_suffix(text: str, ctx: CursorContext) -> str:
    """Do not repeat what follows the cursor.

    Mid-line: drop the longest tail of the completion that the rest of the line already
    starts with (`if x == "a|"):` + `b"):` -> `b`). Multi-line: cut before a completion line
    that is the next line of the document (the model typed on into existing code).
    """
    line_suffix = ctx.line_suffix
    if line_suffix.strip():
        for k in range(min(len(line_suffix), len(text)), 0, -1):
            if text.endswith(line_suffix[:k]) and _drop_is_safe(text, k):
                return text[:-k]
    next_line = _next_line(ctx).rstrip()
    if next_line:
        lines = text.split("\n")
        for i, line in enumerate(lines[1:], start=1):
            if line.rstrip() == next_line:
                return "\n".join(lines[:i])
    return text


def cut_at_dedent(text: str, ctx: CursorContext) -> str:
    """Stop a multi-line completion where indentation leaves the cursor's block.

    When the cursor line opens a block (`def f():|`, or `def f|` + `():`), the completion is
    that block: it ends at the first line indented no deeper than the cursor line, keeping a
    closing line at that level (`}`, Lua's `end`). Otherwise it may go on with more statements at
    the cursor's level and ends at the first line indented less than the cursor line.
    """
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    # The cursor line as it will read once the completion's first line is in: on a blank line
    # (column 0, or the editor's indentation) the model may write the indentation itself.
    first = ctx.line_prefix + lines[0]
    base = _width(first) if not ctx.line_prefix.strip() else _width(ctx.indent)
    opener = opens_block(first)
    for i, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        width = _width(line)
        if width < base or (opener and width == base):
            if opener and width == base and _closes(line):
                return "\n".join(lines[: i + 1])
            return "\n".join(lines[:i])
    return text


def _closes(line: str) -> bool:
    """Whether a line closes a block: a closing bracket (`}`, `})`) or a closing word."""
    text = line.strip()
    return text[0] in _CLOSERS or _CLOSING_WORD.match(text) is not None


def _first_loop(lines: list[str]) -> int | None:
    """Index where a block of 1..MAX_LOOP_LINES non-blank lines starts repeating itself."""
    for i in range(len(lines)):
        for n in range(1, MAX_LOOP_LINES + 1):
            block = lines[i : i + n]
            again = lines[i + n : i + 2 * n]
            if len(again) == n and block == again and any(line.strip() for line in block):
                return i + n
    return None


def drop_repeated_lines(text: str, ctx: CursorContext) -> str:
    """Cut a loop: the same line (or block of lines) twice in a row, counting the line above.

    Greedy decoding on small models falls into such loops; the first copy is kept.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    # The cursor line as it will read, preceded by the line above it in the document.
    seq = [_previous_line(ctx).rstrip(), (ctx.line_prefix + lines[0]).rstrip(), *lines[1:]]
    cut = _first_loop(seq)
    if cut is None:
        return text
    kept = cut - 1  # seq has one extra line in front
    return "\n".join(text.split("\n")[:kept]) if kept > 0 else ""


def _stutters(line: str, after: int = 0) -> bool:
    """Whether `line` holds a loop (_STUTTER) that reaches past its first `after` characters."""
    for m in _STUTTER.finditer(line):
        unit = m.group(1)
        if m.start() + 3 * len(unit) > after and _LOOPING.search(unit):
            if any(c.isalpha() for c in unit):
                return True
    return False


def drop_looping_line(text: str, ctx: CursorContext) -> str:
    """Cut before the first line that loops inside itself (`fib_res = fib_res = fib_res = x`):
    a small model's greedy decoding stutters within a line too, and the line is no code. The
    cursor line counts as it will read, but a loop only in the user's own text is left alone."""
    lines = text.split("\n")
    before = ctx.line_prefix[-_STUTTER_REACH:]
    if _stutters(before + lines[0], after=len(before)):
        return ""
    for i, line in enumerate(lines[1:], start=1):
        if _stutters(line):
            return "\n".join(lines[:i])
    return text


def drop_reclosed_brackets(text: str, line_suffix: str) -> str:
    """Do not close again what the rest of the line already closes.

    `print(|)` + `"hi");` reads `print("hi");)` as is; the completion is cut at its first
    closer that closes something opened before it, when the line suffix starts with that same
    closer (brackets), or at its first unpaired quote when the suffix starts with that quote.
    """
    rest = line_suffix.lstrip(" \t")
    if not rest:
        return text
    head = rest[0]
    if head in _CLOSERS:
        pairs = _match_brackets(text)
        for i in sorted(pairs):
            if pairs[i] is None:
                return text[:i] if text[i] == head else text
        return text
    if head in _QUOTES and text.count(head) % 2 == 1:
        return text[: text.index(head)]
    return text


def drop_duplicate_of_next_line(text: str, ctx: CursorContext) -> str:
    """Drop a suggestion whose first line, as it would read, is already the next line.

    Indentation counts: a closing line at another depth is a different line (`    end` above
    `  end` closes an inner block, as in nvim's vim/lsp/buf.lua), not a re-typed one.
    """
    if ctx.line_suffix.strip():
        return text
    first = (ctx.line_prefix + text.split("\n", 1)[0]).rstrip()
    if first.strip() and first == _next_line(ctx).rstrip():
        return ""
    return text


def drop_blank(text: str) -> str:
    """Nothing to show for a whitespace-only suggestion."""
    return text if text.strip() else ""


def clean(completion: str, ctx: CursorContext) -> str:
    """Apply every rule in order; "" means there is nothing worth showing."""
    return clean_why(completion, ctx)[0]


def clean_why(completion: str, ctx: CursorContext) -> tuple[str, str | None]:
    """`clean`'s text, and the name of the rule that left nothing (a key of RULES; None when
    something is left, or nothing was there to begin with)."""
    mid_line = bool(ctx.line_suffix.strip())
    policy = StopPolicy.inline(ctx.single_line, ctx.max_lines)
    steps: list[tuple[str, Callable[[str], str]]] = [
        # Where the answer ends (end markers, one line only, max_lines): the request's policy.
        ("stop", lambda t: policy.cut(plain_text(t))),
        ("trailing_space", lambda t: drop_trailing_space(t, ctx.trailing_space)),
        ("trailing_whitespace", lambda t: strip_trailing_whitespace(t, keep_end=mid_line)),
        ("cut_at_suffix", lambda t: cut_at_suffix(t, ctx)),
        ("cut_at_dedent", lambda t: cut_at_dedent(t, ctx)),
        ("repeated_lines", lambda t: drop_repeated_lines(t, ctx)),
        ("looping_line", lambda t: drop_looping_line(t, ctx)),
        ("reclosed_brackets", lambda t: drop_reclosed_brackets(t, ctx.line_suffix)),
        ("duplicate_of_next_line", lambda t: drop_duplicate_of_next_line(t, ctx)),
        ("blank", lambda t: drop_blank(strip_trailing_whitespace(t, keep_end=mid_line))),
    ]
    text, emptied = completion, None
    for name, step in steps:
        before, text = text, step(text)
        if emptied is None and before.strip() and not text.strip():
            emptied = name
    return text, emptied


# What each rule that can leave nothing means, for the debug record of a dropped answer.
RULES = {
    "stop": "the stop policy ended it at once (an end marker, one line only, or max_lines)",
    "trailing_space": "only the space the cursor already has",
    "trailing_whitespace": "whitespace only",
    "cut_at_suffix": "it only repeated the text after the cursor",
    "cut_at_dedent": "it only continued after the block the cursor opens",
    "repeated_lines": "it was a loop of repeated lines",
    "looping_line": "its line repeated a piece of itself in a loop",
    "reclosed_brackets": "it only closed brackets the line already closes",
    "duplicate_of_next_line": "it duplicated the next line",
    "blank": "whitespace only",
}
