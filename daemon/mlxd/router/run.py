"""The state of one routed request across its attempts, and how streamed text is handed on:
redacted as it streams once a cloud backend generated it (stream_redact: a hostile provider may
echo a key as model output, split across chunks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import AnswerFilter, Piece, StopPolicy
from ..stream_redact import StreamRedactor
from ..types import DeltaFn, Request


@dataclass(slots=True)
class Run:
    """Mutable state of one routed request."""

    on_delta: DeltaFn | None
    answer: AnswerFilter
    on_reasoning: DeltaFn | None = None
    documents: list[str] = field(default_factory=list)  # what the privacy rules look at
    start: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    deltas: int = 0
    texts: int = 0  # the current attempt's answer deltas (not reasoning)
    first_token: float | None = None
    # Deltas streamed by attempts that then failed: about one token each (a provider's SSE
    # chunk, a local decode step), the part of max_tokens and of the usage they took.
    cut_tokens: int = 0
    cut_by: str = ""  # the last of them
    # (reasoning, text) redactors; they hold text back only once a cloud backend streamed.
    guards: tuple[StreamRedactor, StreamRedactor] | None = None
    cloud: bool = False
    policy: StopPolicy = field(default_factory=StopPolicy)  # where the answer ends


def emit(run: Run, piece: Piece, name: str) -> None:
    """Hand the filtered text on, redacted once a cloud backend streamed: answer text to
    `on_delta`, reasoning to `on_reasoning`."""
    reasoning, text = piece.reasoning, piece.text
    if run.guards and run.cloud:
        reasoning = run.guards[0].feed(reasoning) if reasoning else ""
        text = run.guards[1].feed(text) if text else ""
    _hand_on(run, reasoning, text, name)


def flush(run: Run, name: str) -> None:
    """Hand on what the redactors hold back (the answer ended, or a cloud backend continues
    it: it must get the cut answer redacted, while a local one continues from the raw text
    so that a secret across the cut is still caught)."""
    if run.guards and run.cloud:
        _hand_on(run, run.guards[0].flush(), run.guards[1].flush(), name)


def held(run: Run) -> str:
    """Answer text the redactor holds back (not handed on yet)."""
    return run.guards[1].held if run.guards else ""


def streamed(run: Run) -> int:
    """Characters of answer streamed so far, handed on or held back (to redact)."""
    back = sum(len(g.held) for g in run.guards) if run.guards else 0
    return len(run.text) + back


def _hand_on(run: Run, reasoning: str, text: str, name: str) -> None:
    if reasoning:
        run.reasoning += reasoning
        if run.on_reasoning:
            run.on_reasoning(reasoning, name)
    if text:
        run.text += text
        if run.on_delta:
            run.on_delta(text, name)


def inline_bound(run: Run, req: Request) -> float | None:
    """When an inline request must be answered, whichever backend serves it (issue #17 item 3):
    its deadline (inline.max_ms from its arrival), else max_time_s after the router got it;
    None: only the request's total budget."""
    if req.deadline is not None:
        return req.deadline
    return run.start + req.max_time_s if req.max_time_s else None


def past_max_tokens(run: Run, req: Request, reasoning: bool, local: bool) -> bool:
    """Whether a provider's answer delta goes past the request's max_tokens: it ignores them,
    or floods. Each of its answer deltas holds a token or more (a local model's need not: held
    stop text, its own limit holds); reasoning is not counted (some providers leave it out of
    max_tokens)."""
    run.texts += not reasoning
    return req.max_tokens is not None and run.texts > req.max_tokens and not local
