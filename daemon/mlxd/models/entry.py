"""One loaded model in the pool (pool.py): its batch engine, size and use."""

from __future__ import annotations

from dataclasses import dataclass, field

from .batching import BatchEngine


def draft_role(draft: str, target: str) -> str:
    """How a draft model's messages start."""
    return f"draft_model {draft} of {target} (decoding without it)"


@dataclass(eq=False)
class Entry:
    spec: str
    engine: BatchEngine
    nbytes: int
    last_used: float
    dequantize: str = "auto"
    # The models this one is the draft model of: busy while they are (a job drafts with it).
    drafts_for: list[Entry] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.engine.active > 0 or any(t.engine.active > 0 for t in self.drafts_for)
