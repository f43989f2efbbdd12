"""A local model's draft model (local draft_model): loaded in the same pool, checked once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:
    from ..models import ModelPool, WindowEnv


class DraftModel:
    """The draft model `spec` ("": none) of one local backend's model."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._checked: tuple[Any, Any] | None = None  # (model, draft) known to agree

    async def acquire(
        self, pool: ModelPool, target: str, dequantize: str, hub: WindowEnv | None
    ) -> Any:
        """The draft's loaded model (None without one), acquired before the model `target`
        itself, so that loading it never evicts the model a request is about to use.
        ModelError when its vocabulary is not the model's (drafts are token ids)."""
        if not self.spec:
            return None
        draft = (await pool.acquire(self.spec, dequantize, hub)).engine.lm
        model = (await pool.acquire(target, dequantize, hub)).engine.lm
        checked = self._checked
        if checked is None or checked[0] is not model or checked[1] is not draft:
            if not await asyncio.to_thread(same_vocabulary, model.tokenizer, draft.tokenizer):
                raise ModelError(
                    f"draft model {self.spec} has another vocabulary than {target}: a "
                    "draft_model must use the model's tokenizer (e.g. a smaller model of its "
                    "family)"
                )
            self._checked = (model, draft)
        return draft


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers map the same strings to the same ids."""
    return bool(a.get_vocab() == b.get_vocab())
