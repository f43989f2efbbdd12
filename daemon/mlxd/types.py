"""The domain's data: what flows from the editor's request to a backend and back.

A backend turns a `Request` into an async stream of `Delta`s ending with one `Done` (a local
model may put `Held` marks between them: the request waited for more urgent work); the router
turns those into one `Outcome` (its `attempts` say which backends failed first, and why).
Closing a backend's stream early (the consumer stops iterating, or its task is cancelled) must
stop the work behind it: local generation stops within one decode step, an HTTP stream is closed.
Nothing here knows LSP, HTTP or MLX.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
Kind = Literal["chat", "complete", "inline"]
DeltaFn = Callable[[str, str], None]  # (text, backend name)


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True)
class Request:
    """What the router hands a backend. `messages` for chat; `prefix`/`suffix` for completion.

    `max_tokens == 0` on the local backend is prefill only: the prompt's KV cache is filled
    (so a later request with the same prefix reuses it) and the stream ends with no text and
    `Done("length", prompt_tokens, 0, model)`."""

    kind: Kind
    messages: list[Message] = field(default_factory=list)
    prefix: str = ""
    suffix: str = ""
    language: str = ""
    # Context for completion kinds: a comment block naming the file, maybe neighbour snippets.
    header: str = ""
    # Inline: the token budget for the prompt's header, prefix and suffix, which are the whole
    # document around the cursor. Each backend cuts them to it once, counting as it can: a local
    # model with its tokenizer (less when the time cap allows less), a provider loosely
    # (prompts.loose_tokens). None: a local model uses inline.context_tokens, a provider gets
    # the text as it is (mlxd/complete).
    context_tokens: int | None = None
    # None: the router fills routing.max_tokens, the same for every backend of the chain.
    max_tokens: int | None = None
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)
    # Continue an answer another backend started (mid-stream fallback): the text so far.
    assistant_prefix: str = ""
    # Stop generating after this long and finish with what there is (inline's time cap),
    # measured from when the router gets the request, unless `deadline` is set.
    max_time_s: float | None = None
    # A time.monotonic() instant (inline.max_ms from the request's arrival, issue #17 item 3):
    # every backend of the chain must have answered by then; what streamed is the answer, and
    # a backend that streamed nothing by then is abandoned. None: `max_time_s` or no bound.
    deadline: float | None = None
    # Stop once this many lines with text in them are complete (inline's one-line answers).
    max_lines: int | None = None
    # Inline: the answer tokens a local model's time fit plans for after the prompt (None:
    # models.budget.LINE_TOKENS, the rest of a line); a block's first line is longer.
    line_tokens: int | None = None
    # "background": lowest priority. Any interactive request preempts it within one decode step
    # (prefill runs in chunks), and cancelling its task drops it at once (issue #17 item 6).
    # Among interactive requests a local model runs inline ones first (models/ranks.py).
    priority: Literal["interactive", "background"] = "interactive"
    # Inline: where the prompt's window is cut from the text. "cursor": the text nearest the
    # cursor (the end of `prefix`); "top": the start of `prefix`, as much as the budget holds
    # (a local model's warm-up after didOpen: every cursor in it has a prompt starting so).
    window: Literal["cursor", "top"] = "cursor"
    # Inline warm-up at a cursor (inline/ahead.py): the window the full budget gives, narrowed
    # to this many tokens (a rung of models.budget.warm_rungs, the windows a time-capped request
    # looks for in the KV cache). None: the full window.
    narrow_to: int | None = None
    # Inline, a local model: let the generation go on past the answer's end, in the background
    # (GoOn). None: it stops there.
    go_on: GoOn | None = None


@dataclass(eq=False, slots=True)
class GoOn:
    """A local model's generation going on after its answer ended, in the same decode (issue
    #17: the suggestion after the shown one, with no new job, prefill or first step). The
    inline engine puts one on a request; the local backend that serves it, when the answer
    ended before the generation did (enough lines, a stop string) and nobody cancelled it,
    lets the generation go on at background priority and fills it:

    - `text`: everything the generation wrote, the answer's part first (as streamed, before
      any stop string or line limit cut it), until it holds `lines` finished lines with text,
      `bound_s` seconds after the answer ended, `max_tokens` more tokens, or the model's end;
    - `tokens`: the tokens written after the answer ended; `finish_reason` "stop" (the lines
      or the model ended it) or "length" (a cap cut it), None while it runs.

    `started` says whether the backend took it on (else it stays empty: a provider, a
    cancelled request, a generation that had ended). `stop()` ends it at once (its KV cache is
    kept), `extend()` moves its bound; `wait()` returns when it is over. Used on the event loop
    only."""

    lines: int
    bound_s: float
    max_tokens: int
    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    started: bool = False
    stopped: bool = False
    _over: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: Callable[[], None] | None = None
    _extend: Callable[[float], None] | None = None

    def take(self, stop: Callable[[], None], extend: Callable[[float], None]) -> None:
        """The backend goes on; `stop` ends its generation, `extend(until)` moves its bound."""
        self.started, self._stop, self._extend = True, stop, extend
        if self.stopped:
            stop()

    def extend(self, until: float) -> None:
        """Let it go on until `until` (time.monotonic()) at least: a request waits for it till
        then, and a cut would make that request start a generation of its own."""
        if self._extend is not None and not self.over:
            self._extend(until)

    def end(self, finish_reason: str | None) -> None:
        """The backend's generation is over."""
        self.finish_reason = self.finish_reason or finish_reason
        self._over.set()

    def stop(self) -> None:
        """Nobody wants more: end the generation (a no-op once it is over)."""
        self.stopped = True
        if self._stop is not None and not self._over.is_set():
            self._stop()
        self._over.set()

    @property
    def over(self) -> bool:
        return self._over.is_set()

    async def wait(self) -> None:
        await self._over.wait()


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    # Reasoning a provider streams apart from the answer (`reasoning_content`, thinking).
    reasoning: bool = False


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    model: str


@dataclass(frozen=True, slots=True)
class Held:
    """The backend set the request aside for more urgent work, for `seconds` at most (a local
    model pausing a chat while an inline request runs, models/ranks.py). No text: the wait is
    not counted against the request's first-token limit."""

    seconds: float


Event = Delta | Done | Held


class Backend(Protocol):
    name: str
    is_local: bool

    @property
    def spec(self) -> str:
        """The model it serves: a local model's path / repo id / name, or a provider's model."""
        ...

    @property
    def specs(self) -> tuple[str, ...]:
        """The local model pool's models it uses: its model and draft model; () for a
        provider's."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (always False for a provider's)."""
        ...

    def stream(self, request: Request) -> AsyncIterator[Event]:
        """Yield Deltas then exactly one Done; raise an `errors.BackendError` on failure."""
        ...

    def fences_prompt(self, request: Request) -> bool:
        """Whether the prompt for `request` gives the code in a markdown fence (so a bare ```
        line of the answer closes it)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Status:
    """The daemon's state as the editor sees it: starting | loading | ready | degraded | error,
    each backend's (ok | cooldown | unconfigured | error | no_key), and why (or None)."""

    state: str
    backends: dict[str, str]
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # the model a backend serves (Backend.spec)
    backend: str
    loaded: bool


@dataclass(slots=True)
class Attempt:
    """One backend the router tried or skipped, and why it did not answer; `timed_out`: the
    request's own time bound (inline.max_ms) ended it, not a fault of the backend."""

    backend: str
    error: str
    timed_out: bool = False


@dataclass(slots=True)
class Outcome:
    """A routed request's answer: the text, who gave it, the usage and the time it took (ms)."""

    text: str
    backend: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    attempts: list[Attempt]
    first_token_ms: float | None
    total_ms: float
    reasoning: str = ""  # chat only: the model's reasoning, kept out of `text`
