"""What of a generated stream is the answer: reasoning apart, fences off, stops enforced.

Every backend's text passes through one `AnswerFilter` per request (the router holds it), so
the rules hold whatever the backend or server does:

- Reasoning: a `<think>…</think>` block at the start of an attempt's output, and text a
  provider streams as reasoning (`reasoning_content`, thinking deltas), is never answer text.
  Chat reports it apart; completion kinds drop it.
- Markdown fences (completion kinds): an opening fence line (```` ```python ````) at the start
  of the answer is dropped, and a closing fence line ends the answer.
- Stop sequences: nothing at or after one is emitted, across chunk boundaries, even when the
  server ignored `stop`; `stopped` then tells the caller to close the upstream.

Text that may still turn into a tag, a fence or a stop is held back until it cannot, so
nothing emitted is ever taken back.
"""

from __future__ import annotations

from dataclasses import dataclass

from .stops import StopMatcher

OPEN_THINK = "<think>"
CLOSE_THINK = "</think>"
FENCE = "```"
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
    output starts inside the block."""

    def __init__(self, opened: bool = False) -> None:
        self.state = "reasoning" if opened else "start"  # start | reasoning | after | answer
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
                    self.state = "answer"
            elif self.state == "reasoning":
                end = self.buf.find(CLOSE_THINK)
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


class _Fences:
    """Drops a markdown fence around a completion."""

    def __init__(self, language: str) -> None:
        self.strict = language.lower() in _FENCED_LANGUAGES
        self.state = "start"  # start | body
        self.opened = False
        self.buf = ""
        self.closed = False
        self.at_line_start = True  # whether `buf` begins a line (else it continues one)

    def feed(self, text: str) -> str:
        if self.closed:
            return ""
        self.buf += text
        if self.state == "start":
            head = self.buf.lstrip(" \t\n")
            if head.startswith(FENCE):
                nl = head.find("\n")
                if nl < 0:
                    return ""  # the fence line is not complete yet
                self.opened, self.buf = True, head[nl + 1 :]
            elif FENCE.startswith(head):
                return ""
            self.state = "body"
        return self._scan()

    def _scan(self) -> str:
        """Emit the body up to a closing fence line; hold a last line that may become one."""
        buf = self.buf
        pos = 0
        while True:
            line_start = pos
            rest = buf[line_start:]
            stripped = rest.lstrip(" \t")
            may_close = (self.opened or not self.strict) and (pos > 0 or self.at_line_start)
            if may_close and stripped.startswith(FENCE):
                # Drop the newline before the fence too: it belongs to the fence.
                out = buf[: max(line_start - 1, 0)] if line_start else ""
                self.closed, self.buf = True, ""
                return out
            nl = buf.find("\n", line_start)
            if nl < 0:
                # The last line is incomplete: hold it (and its newline) while it may be a fence.
                if may_close and FENCE.startswith(stripped):
                    cut = max(line_start - 1, 0) if line_start else 0
                    self.buf = buf[cut:]
                    return buf[:cut]
                self.buf = ""
                self.at_line_start = False  # the text emitted ends inside a line
                return buf
            pos = nl + 1

    def flush(self) -> str:
        buf, self.buf = self.buf, ""
        if self.closed:
            return ""
        if self.state == "start" and buf.lstrip(" \t\n").startswith(FENCE):
            return ""  # nothing but an opening fence line
        return buf


ThinkSplitter = _Think  # for a backend whose prompt opened the block


class AnswerFilter:
    """One request's stream filter; it lives across fallback attempts.

    `feed(text, reasoning)` takes a backend's delta and returns the `Piece` safe to emit now;
    `flush()` at the end returns what was held back; `stopped` is set once the answer ended (a
    stop sequence, or a closing fence) and the upstream should be closed.
    """

    def __init__(self, kind: str, stop: list[str], language: str = "") -> None:
        self.chat = kind == "chat"
        self._think = _Think()
        self._fences = None if self.chat else _Fences(language)
        self._stops = StopMatcher(stop)
        self._surrogate: dict[
            bool, str
        ] = {}  # a held high surrogate, per stream (answer/reasoning)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped or bool(self._fences and self._fences.closed)

    def new_attempt(self) -> None:
        """Another backend takes over: it may open with its own reasoning block; text held
        from the failed one is dropped (the next continues from what was emitted)."""
        self._think = _Think()
        self._stops.pending = ""
        self._surrogate.clear()
        if self._fences is not None and self._fences.state == "body":
            self._fences.buf = ""

    def feed(self, text: str, reasoning: bool = False) -> Piece:
        if self.stopped:
            return Piece()
        text = self._whole_characters(text, reasoning)
        if not text:
            return Piece()
        if reasoning:
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
