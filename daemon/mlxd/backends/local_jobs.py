"""What a local model's finished job tells (backends/local.py): where its time went."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..models import Job
from ..types import Request
from .local_prompt import stop_ids

log = logging.getLogger("mlxd.backends.local")


def began(job: Job, submitted: float) -> float:
    """When the job's own work began: when the engine took it from the queue, not before (a
    background prefill chunk in flight finishes first: up to 64 tokens' time, which is not
    this prompt's prefill speed)."""
    return max(submitted, job.started) if job.started is not None else submitted


def log_job(
    name: str, job: Job, start: float, first: float | None, last: float | None, cut: bool
) -> None:
    """One DEBUG line per inline job (issue #16: where a request's time went)."""
    end = time.monotonic()
    log.debug(
        "%s: inline%s job: %d prompt tokens, %d from the KV cache, %d prefilled; taken after "
        "%.0f ms, first token after %.0f ms; %d tokens in %.0f ms more%s",
        name,
        " background" if job.background else "",
        len(job.tokens),
        job.reused,
        job.prefilled - job.reused,
        (began(job, start) - start) * 1000,
        ((first or end) - start) * 1000,
        job.generated,
        ((last or first or end) - (first or end)) * 1000,
        ", cut by its deadline" if cut else "",
    )


def job_for(
    lm: Any, req: Request, tokens: list[int], max_tokens: int, healer: Any, emit: Any
) -> Job:
    """The batch engine's job for a request's prompt `tokens`."""
    return Job(
        tokens=tokens,
        max_tokens=max_tokens,
        temperature=req.temperature,
        # Going on past the answer (GoOn): the router's filter ends the answer at a stop.
        stop=req.stop if req.go_on is None else [],
        stop_tokens=stop_ids(lm.tokenizer, tokens) if req.kind != "chat" else frozenset(),
        emit=emit,
        deadline=deadline(req),
        background=req.priority == "background",
        inline=req.kind == "inline",  # outranks chat and complete (models/ranks.py)
        healer=healer,
    )


def deadline(req: Request) -> float | None:
    """When the answer must be complete (monotonic), if the request says."""
    if req.deadline is not None:
        return req.deadline
    return time.monotonic() + req.max_time_s if req.max_time_s else None


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline  # None: no deadline
