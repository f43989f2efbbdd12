"""One request's state in the batch engine (models/batching.py), on the MLX thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    uid: int | None = None
    detokenizer: TextStream | None = None
    matcher: StopMatcher | None = None
    generated: int = 0
    reused: int = 0  # prompt tokens found in the KV cache (set when admitted)
    background: bool = False  # lowest priority: runs only while no interactive job is there
    # The engine's background steps when it was submitted, and how many more ran before its
    # first token (None until then): the preemption bound made observable.
    submitted_at: int = 0
    waited: int | None = None
    prefilled: int = 0  # prompt tokens in its KV cache so far (reused ones included)
    # Token healing (models/healing.py): the logits processor that makes the answer type the
    # prompt's cut-off last token again first; such a job does not speculate.
    healer: Any = None
