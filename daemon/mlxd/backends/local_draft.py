"""A local model's draft model (local draft_model): loaded in the same pool, checked once.

The draft only speeds greedy decoding up: one that cannot serve (not found, does not fit the
memory budget beside its model, another vocabulary) is shown once, like any load error, and
the model decodes without it (prompt lookup); it is not tried again until the setting changes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..models import LoadCancelled, draft_role

if TYPE_CHECKING:
    from ..models import ModelPool, WindowEnv

log = logging.getLogger("mlxd.backends.local")


class DraftModel:
    """The draft model `spec` ("": none) of one local backend's model."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.failed: str | None = None  # why it cannot serve (then never asked again)
        self._checked: tuple[Any, Any] | None = None  # (model, draft) known to agree

    async def acquire(
        self, pool: ModelPool, target: str, dequantize: str, hub: WindowEnv | None
    ) -> Any:
        """The draft's pool entry (its `engine.lm` drafts), loaded after the model `target`
        without evicting it (or being evicted by it: each load would evict the other, every
        request); None without a draft, or one that cannot serve. Raises what loading the
        model itself raises, and LoadCancelled."""
        if not self.spec or self.failed is not None:
            return None
        target_entry = await pool.acquire(target, dequantize, hub)
        model = target_entry.engine.lm
        try:
            entry = await pool.acquire(self.spec, dequantize, hub, draft_of=target)
        except LoadCancelled:
            raise
        except ModelError as exc:  # shown by the pool's status event, once
            self.failed = exc.message
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
                pool.on_event(self.spec, "error", self.failed)  # shown like a load error
                log.warning("%s", self.failed)
                return None
            self._checked = (model, draft)
        # Busy while the model is (its jobs draft with it): never unloaded under them.
        live = [t for t in entry.drafts_for if pool.entries.get(t.spec) is t]
        entry.drafts_for = live + ([] if target_entry in live else [target_entry])
        return entry


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers map the same strings to the same ids."""
    return bool(a.get_vocab() == b.get_vocab())
