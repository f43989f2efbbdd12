"""The state of one routed request across its attempts, and how streamed text is handed on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import AnswerFilter, Piece
from ..types import DeltaFn


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
    first_token: float | None = None
    # Deltas streamed by attempts that then failed: about one token each (a provider's SSE
    # chunk, a local decode step), the part of max_tokens and of the usage they took.
    cut_tokens: int = 0
    cut_by: str = ""  # the last of them


def emit(run: Run, piece: Piece, name: str) -> None:
    """Hand the filtered text on: answer text to `on_delta`, reasoning to `on_reasoning`."""
    if piece.reasoning:
        run.reasoning += piece.reasoning
        if run.on_reasoning:
            run.on_reasoning(piece.reasoning, name)
    if piece.text:
        run.text += piece.text
        if run.on_delta:
            run.on_delta(piece.text, name)
