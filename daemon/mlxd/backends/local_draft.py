"""A local model's draft model (local draft_model): loaded in the same pool, checked once.

The draft only speeds greedy decoding up: one that cannot serve is shown once and the model
decodes without it (prompt lookup). A load that failed (not found, not fitting the memory
budget beside its model) is shown as the pool's load error and tried again later, RETRY_S
then twice as long each time (the budget may have room by then); another vocabulary is told
to this window (`warn`) and never retried until the setting changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..models import LoadCancelled, draft_role

if TYPE_CHECKING:
    from ..models import ModelPool, WindowEnv

log = logging.getLogger("mlxd.backends.local")
RETRY_S = 30.0  # a draft whose load failed is not asked for again sooner (then 60 s, ...)
RETRY_MAX_S = 3600.0


class DraftModel:
    """The draft model `spec` ("": none) of one local backend's model."""

    def __init__(self, spec: str, warn: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.warn = warn or log.warning  # tells the window (its editor) once
        self.failed: str | None = None  # another vocabulary: never asked for again
        self.retry_at = 0.0  # monotonic: a failed load is not tried again before then
        self._retry_s = RETRY_S
        self._checked: tuple[Any, Any] | None = None  # (model, draft) known to agree

    async def acquire(
        self, pool: ModelPool, target: str, dequantize: str, hub: WindowEnv | None
    ) -> Any:
        """The draft's pool entry (its `engine.lm` drafts), loaded after the model `target`
        without evicting it (or being evicted by it: each load would evict the other, every
        request); None without a draft, or one that cannot serve. Raises what loading the
        model itself raises, and LoadCancelled."""
        if not self.spec or self.failed is not None or time.monotonic() < self.retry_at:
            return None
        target_entry = await pool.acquire(target, dequantize, hub)
        model = target_entry.engine.lm
        try:
            entry = await pool.acquire(self.spec, dequantize, hub, draft_of=target)
        except LoadCancelled:
            raise
        except ModelError:  # shown by the pool's load error event, once per message
            self.retry_at = time.monotonic() + self._retry_s
            self._retry_s = min(RETRY_MAX_S, 2 * self._retry_s)
            return None
        draft = entry.engine.lm
        checked = self._checked
        if checked is None or checked[0] is not model or checked[1] is not draft:
            if not await asyncio.to_thread(same_vocabulary, model.tokenizer, draft.tokenizer):
                self.failed = (
                    f"{draft_role(self.spec, target)}: its vocabulary is not the model's: a "
                    "draft_model must use the model's tokenizer (e.g. a smaller model of its "
                    "family)"
                )
                # Not the pool's event: the model may be another backend's, which works.
                self.warn(self.failed)
                return None
            self._checked = (model, draft)
        # Busy while the model is (its jobs draft with it): never unloaded under them.
        live = [t for t in entry.drafts_for if pool.entries.get(t.spec) is t]
        entry.drafts_for = live + ([] if target_entry in live else [target_entry])
        return entry


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers map the same strings to the same ids."""
    return bool(a.get_vocab() == b.get_vocab())
