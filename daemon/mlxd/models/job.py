"""One request's state in the batch engine (models/batching.py), on the MLX thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Delta, Done
from .detokenize import TextStream
from .stops import StopMatcher

Emit = Callable[[Any], None]  # Delta | Done | BaseException, delivered on the event loop


@dataclass(eq=False)
class Job:
    """One request's state on the MLX thread."""

    tokens: list[int]  # the whole prompt
    max_tokens: int
    temperature: float
    stop: list[str]
    emit: Emit
    # Token ids that end the answer like EOS (a FIM template's end tokens): never in the text,
    # counted in the usage.
    stop_tokens: frozenset[int] = frozenset()
    deadline: float | None = None  # monotonic; finish with what there is after it
    cancelled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)  # out, its KV cache kept
    uid: int | None = None
    detokenizer: TextStream | None = None
    matcher: StopMatcher | None = None
    generated: int = 0
    reused: int = 0  # prompt tokens found in the KV cache (set when admitted)
    background: bool = False  # lowest priority: runs only while no interactive job is there
    # Latency-bound (an inline request): outranks streams until its deadline, at most
    # ranks.INLINE_RANK_S after it was made (models/ranks.py).
    inline: bool = False
    made: float = field(default_factory=time.monotonic)
    # The engine's background steps when it was submitted, and how many more ran before its
    # first token (None until then): the preemption bound made observable.
    submitted_at: int = 0
    waited: int | None = None
    prefilled: int = 0  # prompt tokens in its KV cache so far (reused ones included)
    # When the engine took it from the queue (monotonic; None: not yet): the wait before it,
    # for a background chunk in flight, is not the model's prefill speed.
    started: float | None = None
    # Token healing (models/healing.py): the logits processor that makes the answer type the
    # prompt's cut-off last token again first; such a job does not speculate.
    healer: Any = None
    # A draft model (a loaded model of the same vocabulary) that drafts for this job when it
    # speculates, instead of prompt lookup (models/speculative.py ModelDrafter).
    draft: Any = None
    # A stream's pauses for inline work (models/ranks.py; monotonic seconds): when the current
    # one began and ends at the latest, how many there were, their total, that total at the
    # first token, and until when it is not paused again.
    paused_at: float | None = None
    pause_ends: float | None = None
    pauses: int = 0
    held_s: float = 0.0
    held_first_s: float = 0.0
    protected_until: float = 0.0
    # An inline request's mark (BatchEngine.expect): dropped when this job takes its place.
    mark: Any = None

    def held(self, now: float) -> float:
        """Seconds it has been paused for inline work so far (the current pause included)."""
        paused_at = self.paused_at  # read once: the MLX thread may clear it meanwhile
        return self.held_s + (max(0.0, now - paused_at) if paused_at is not None else 0.0)

    def send(self, segment: str) -> None:
        """Stream a decoded piece: less what the prompt gave back (token healing), up to a
        stop string."""
        if self.healer is not None:  # the text the prompt gave back is the document's already
            segment = self.healer.unheal(segment)
        if segment and self.matcher is not None and (text := self.matcher.feed(segment)):
            self.emit(Delta(text))

    def finish(self, reason: str | None, model: str) -> None:
        """The job is out of the batch, its KV cache kept (reason None: cancelled, nobody
        reads the rest); else the held text and Done go out."""
        self.ended.set()
        if reason is None:
            return
        # Tokens held for a partial character go out, less it (a cut mid-way).
        held = self.detokenizer.finish() if self.detokenizer is not None else ""
        assert self.matcher is not None
        if tail := self.matcher.feed(held) + self.matcher.flush():
            self.emit(Delta(tail))
        self.emit(Done(reason, len(self.tokens), self.generated, model))  # type: ignore[arg-type]
