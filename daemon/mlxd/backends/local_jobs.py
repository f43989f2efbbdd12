"""What a local model's finished job tells (backends/local.py): where its time went."""

from __future__ import annotations

import logging
import time

from ..models import Job

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
