"""What of a generated stream is the answer: reasoning apart, fences off, stops enforced.

Every backend's text passes through one `AnswerFilter` per request (the router holds it), so
the rules hold whatever the backend or server does:

- Reasoning: a `<think>…</think>` block at the start of an attempt's output, and text a
  provider streams as reasoning (`reasoning_content`, thinking deltas), is never answer text.
  Chat reports it apart; completion kinds drop it, and `complete` on a cloud backend also
  text before a lone `</think>` in its first LONE_CLOSE_HOLD characters (the prompt's
  template opened the block).
- Markdown fences (completion kinds): an opening fence line (```` ```python ````, `~~~`) at the
  start of the answer is dropped, and the fence line that closes it ends the answer. Without
  one, a bare ```` ``` ```` line ends it only where the prompt opened a fence (a chat model
  given fenced code); other fence lines are content (a docstring's example).
- Stop sequences: nothing at or after one is emitted, across chunk boundaries, even when the
  server ignored `stop`; `stopped` then tells the caller to close the upstream.

Text that may still turn into a tag, a fence or a stop is held back until it cannot, so
nothing emitted is ever taken back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .stops import StopMatcher

OPEN_THINK = "<think>"
CLOSE_THINK = "</think>"
# Characters of a `complete` answer held while a lone </think> may still end unseen reasoning.
LONE_CLOSE_HOLD = 4096
_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)\Z")
_FENCE_PREFIX = re.compile(r" {0,3}(?:`*|~*)[ \t\r]*\Z")  # what may still become a bare fence
# Languages where a fence is content the user may be typing: only a fence we opened closes.
_FENCED_LANGUAGES = {"markdown", "mdx", "rmd", "quarto", "asciidoc", "rst"}


@dataclass(slots=True)
class Piece:
    text: str = ""
    reasoning: str = ""


def _held_prefix(buf: str, token: str) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of `token`."""
    for n in range(min(len(token) - 1, len(buf)), 0, -1):
        if buf.endswith(token[:n]):
            return n
    return 0


class _Think:
    """Splits `<think>…</think>` at the start of an attempt's output from the answer;
    `opened`: the prompt itself ended in `<think>` (reasoning models' chat templates), so the
    output starts inside the block.

    `hold` > 0: the prompt may have opened the block unseen (a cloud server applying such a
    template without a reasoning parser streams `reasoning…</think>answer`), so the first
    `hold` characters of an output not starting with `<think>` are held: a `</think>` among
    them makes everything before it reasoning; past them the output is answer."""

    def __init__(self, opened: bool = False, hold: int = 0) -> None:
        # start | probe (looking for a lone </think>) | reasoning | after | answer
        self.state = "reasoning" if opened else "start"
        self.hold = hold
        self.buf = ""

    def feed(self, text: str) -> Piece:
        self.buf += text
        out = Piece()
        while self.buf:
            if self.state == "start":
                head = self.buf.lstrip()
                if head.startswith(OPEN_THINK):
                    self.state, self.buf = "reasoning", head[len(OPEN_THINK) :]
                elif OPEN_THINK.startswith(head):
                    break  # could still become <think>: wait
                else:
                    self.state = "probe" if self.hold > 0 else "answer"
            elif self.state in ("reasoning", "probe"):
                end = self.buf.find(CLOSE_THINK)
                if end < 0 and self.state == "probe":
                    if len(self.buf) < self.hold:
                        break  # a </think> may still come
                    self.state = "answer"
                    continue
                if end < 0:
                    keep = _held_prefix(self.buf, CLOSE_THINK)
                    out.reasoning += self.buf[: len(self.buf) - keep]
                    self.buf = self.buf[len(self.buf) - keep :]
                    break
                out.reasoning += self.buf[:end]
                # The answer after a reasoning block starts after its blank line(s).
                self.state, self.buf = "answer", self.buf[end + len(CLOSE_THINK) :].lstrip("\n")
                if not self.buf:
                    self.state = "after"
                    break
            elif self.state == "after":  # just past </think>: drop the newlines that follow
                self.buf = self.buf.lstrip("\n")
                if self.buf:
                    self.state = "answer"
            else:
                out.text += self.buf
                self.buf = ""
        return out

    def flush(self) -> Piece:
        buf, self.buf = self.buf, ""
        if self.state == "reasoning":
            return Piece(reasoning=buf)
        return Piece(text=buf)


def _fence(line: str) -> tuple[str, int, str] | None:
    """(character, length, info string) of a CommonMark fence line, or None."""
    m = _FENCE_LINE.match(line)
    if m is None or (m[1][0] == "`" and "`" in m[2]):
        return None
    return m[1][0], len(m[1]), m[2].strip()


class _Fences:
    """Drops a markdown fence around a completion (CommonMark fences: ``` or ~~~, at most 3
    spaces of indent; a closing one has the opening's character, at least its length and no
    info string).

    A fence closes the answer when the answer opened it, or, outside markdown-like languages,
    when it is a bare ``` and the prompt opened one (`prompt_fenced`: a chat model given the code
    in a fenced block closes that block). Any other fence line is content: it and the fence
    that matches it (a docstring's example) are passed through."""

    def __init__(self, language: str, prompt_fenced: bool = True) -> None:
        self.language = language
        self.wrote = False  # whether any text but whitespace came out
        self.strict = language.lower() in _FENCED_LANGUAGES
        self.prompt_fenced = prompt_fenced
        self.state = "start"  # start | body
        self.opened: tuple[str, int] | None = None  # the answer's own fence
        self.inner: tuple[str, int] | None = None  # a fence of the content, until it closes
        self.buf = ""
        self.closed = False
        self.at_line_start = True  # whether `buf` begins a line (else it continues one)

    def feed(self, text: str) -> str:
        if self.closed:
            return ""
        self.buf += text
        out = self._take()
        self.wrote = self.wrote or bool(out.strip())
        return out

    def _take(self) -> str:
        """What `buf` lets out now (an opening fence dropped, a last line held)."""
        if self.state == "start":
            head = self.buf.lstrip(" \t\n")
            nl = head.find("\n")
            fence = _fence(head if nl < 0 else head[:nl])
            if nl < 0 and (fence or _FENCE_PREFIX.match(head)):
                return ""  # the fence line is not complete yet, or may still become one
            if fence:
                self.opened, self.buf = fence[:2], head[nl + 1 :]
            self.state = "body"
        return self._scan()

    def _line(self, line: str) -> bool:
        """Take a whole line (or one whose kind is decided): whether it closes the answer."""
        fence = _fence(line)
        if fence is None:
            return False
        char, n, info = fence
        if self.opened is not None:  # inside the answer's fence only its closer counts
            return not info and char == self.opened[0] and n >= self.opened[1]
        if self.inner is not None:
            if not info and char == self.inner[0] and n >= self.inner[1]:
                self.inner = None
            return False
        if not info and self.prompt_fenced and not self.strict and char == "`":
            return True  # the prompt's fence
        self.inner = (char, n)
        return False

    def _scan(self) -> str:
        """Emit the body up to a closing fence line; hold a last line that may become one."""
        buf, pos = self.buf, 0
        while True:
            nl = buf.find("\n", pos)
            line = buf[pos:] if nl < 0 else buf[pos:nl]
            whole = pos > 0 or self.at_line_start
            if nl >= 0:
                if whole and self._line(line):
                    # Drop the line end before the fence too (\r\n or \n): it is the fence's.
                    self.closed, self.buf = True, ""
                    return buf[: _line_end(buf, pos)]
                pos = nl + 1
                continue
            if whole and _FENCE_PREFIX.match(line):  # may still become a fence line: hold
                cut = _line_end(buf, pos)  # with the line end before it (\r\n or \n)
                self.buf = buf[cut:]
                return buf[:cut]
            if whole:
                self._line(line)  # decided already: a fence with an info string, or no fence
            self.buf = ""
            self.at_line_start = False  # the text emitted ends inside a line
            return buf

    def flush(self) -> str:
        buf, self.buf = self.buf, ""
        if self.closed:
            return ""
        if self.state == "start":
            head = buf.lstrip(" \t\n")
            return "" if _fence(head.split("\n", 1)[0]) else buf  # nothing but an opening fence
        pos = buf.rfind("\n") + 1
        if (pos > 0 or self.at_line_start) and self._line(buf[pos:]):  # a last fence line
            return buf[: _line_end(buf, pos)]
        return buf


def _line_end(buf: str, pos: int) -> int:
    """Where the line end (\r\n or \n) before position `pos`, a line's start, begins."""
    end = max(pos - 1, 0)
    return end - 1 if end and buf[end - 1] == "\r" else end


ThinkSplitter = _Think  # for a backend whose prompt opened the block


class AnswerFilter:
    """One request's stream filter; it lives across fallback attempts.

    `feed(text, reasoning)` takes a backend's delta and returns the `Piece` safe to emit now;
    `flush()` at the end returns what was held back; `stopped` is set once the answer ended (a
    stop sequence, or a closing fence) and the upstream should be closed.
    """

    def __init__(self, kind: str, stop: list[str], language: str = "") -> None:
        self.chat = kind == "chat"
        # Not inline: its max_lines and max_ms end the answer on the text as it streams.
        self._hold = LONE_CLOSE_HOLD if kind == "complete" else 0
        self._think = _Think(hold=self._hold)
        self._fences = None if self.chat else _Fences(language)
        self._stops = StopMatcher(stop)
        self._surrogate: dict[
            bool, str
        ] = {}  # a held high surrogate, per stream (answer/reasoning)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped or bool(self._fences and self._fences.closed)

    def use_prompt(self, fenced: bool, template_seen: bool = False) -> None:
        """What the backend about to stream was sent: `fenced`, its code in a fence (see
        `_Fences`; default True); `template_seen`, a prompt whose chat template the backend
        checked for an opened `<think>` itself (the local model), so no lone `</think>` is
        looked for (see `_Think`; default False)."""
        if self._fences is not None:
            self._fences.prompt_fenced = fenced
        if self._think.state == "start":
            self._think.hold = 0 if template_seen else self._hold

    @property
    def held(self) -> str:
        """Answer text fed but not released yet: the end of a possible stop sequence, a last
        line that may become a closing fence (every line's newline, until the next line
        shows it is none). The answer so far ends with it, and a backend that continues a
        cut answer continues it (the router's prefix): it stays held across attempts."""
        fences = self._fences
        body = fences is not None and fences.state == "body" and not fences.closed
        return self._stops.pending + (fences.buf if body else "")  # type: ignore[union-attr]

    @property
    def unreleased(self) -> int:
        """Characters fed and not released: `held`, and text held as maybe reasoning."""
        return len(self.held) + (len(self._think.buf) if self._think.state == "probe" else 0)

    def new_attempt(self) -> None:
        """Another backend takes over: it may open with its own reasoning block (text the
        failed one held as maybe reasoning is dropped: it may have been); answer text held
        from the failed one stays (`held`: the next continues after it). Fences start over
        while no text has come out of them: the next opens its own fence or none (an opening
        fence, or one with only whitespace after it, from the failed one is dropped)."""
        self._think = _Think(hold=self._hold)
        self._surrogate.clear()
        if self._fences is not None and not self._fences.closed and not self._fences.wrote:
            self._fences = _Fences(self._fences.language, self._fences.prompt_fenced)

    def feed(self, text: str, reasoning: bool = False) -> Piece:
        if self.stopped:
            return Piece()
        text = self._whole_characters(text, reasoning)
        if not text:
            return Piece()
        if reasoning:  # the server parses reasoning out: no lone </think> to look for
            self._think.hold = 0
            return Piece(reasoning=text if self.chat else "")
        return self._answer(self._think.feed(text))

    def flush(self) -> Piece:
        if self.stopped:
            return Piece()
        out = self._answer(self._think.flush())
        tail = self._fences.flush() if self._fences is not None else ""
        tail = self._stops.feed(tail) if tail else ""
        return Piece(out.text + tail + self._stops.flush(), out.reasoning)

    def _whole_characters(self, text: str, reasoning: bool) -> str:
        """A provider may split a character outside the BMP between two JSON chunks as two
        lone surrogates ("\\ud83d", "\\ude00"): join them, and hold a trailing high one."""
        held = self._surrogate.pop(reasoning, "")
        text = held + text
        if text and "\ud800" <= text[-1] <= "\udbff":
            self._surrogate[reasoning], text = text[-1], text[:-1]
        if any("\ud800" <= c <= "\udfff" for c in text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def _answer(self, piece: Piece) -> Piece:
        text = piece.text
        if self._fences is not None and text:
            text = self._fences.feed(text)
        text = self._stops.feed(text) if text else ""
        return Piece(text, piece.reasoning if self.chat else "")
