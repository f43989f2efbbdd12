"""How a session's inline engine reaches its router and backends: which requests may go where
(a sampled alternative and background work stay on the local model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..backends import loglikelihoods
from ..taint import inline_quotes
from ..types import Request

if TYPE_CHECKING:
    from .core import App


def make_inline_engine(app: App) -> Any:
    """The session's inline engine, wired to its router and backends (local-only rules)."""
    from ..inline import InlineEngine

    async def generate(request: Request, ctx: Any) -> Any:
        # The engine needs the whole Outcome (was the last line cut?). A sampled request is an
        # Invoked alternative: the chain's local model only (KV reuse; a provider would bill).
        chain = app.router.chain("inline", None) if request.temperature else []
        pin = next((name for name in chain if is_local(name)), None)
        docs = [ctx.uri] if ctx.uri else []
        if pin is None and (quoted := quoted_in(request)):
            docs.append(quoted)  # rule 2 (taint.py): as if it named the excluded document
        return await app.router.run(request, backend=pin, documents=docs)

    def quoted_in(request: Request) -> str | None:
        # The open excluded document a line of which a cloud provider would be sent, if any.
        return inline_quotes(request, app.documents.texts(), app.router.excluded)

    def is_local(name: str | None) -> bool:
        backend = app.backends.get(name or "")
        return backend is not None and backend.is_local

    def served_locally(outcome: Any) -> bool:
        return is_local(getattr(outcome, "backend", None))

    def local_first(uri: str) -> bool:  # where the document's next inline request goes first
        return is_local(app.router.first_choice("inline", [uri]))

    async def background(request: Request, ctx: Any) -> Any:
        # Where the document's next real inline request would go, and only if that is a local
        # model: nothing is ever sent to a cloud backend in the background (inline/ahead.py).
        docs = [ctx.uri] if ctx.uri else []
        name = app.router.first_choice("inline", docs)
        if not is_local(name):
            return None
        backend = app.backends[name]  # type: ignore[index]
        if request.max_tokens == 0:  # prefill only; the router answers it without a backend
            done = None
            async for event in backend.stream(request):
                done = event
            return done
        return await app.router.run(request, backend=name, documents=docs)

    async def score(request: Request, ctx: Any, texts: Sequence[str]) -> list[float] | None:
        # The local model background work runs on (rerank.py); a cloud model gives no scores.
        name = app.router.first_choice("inline", [ctx.uri] if ctx.uri else [])
        if not is_local(name):
            return None
        return await loglikelihoods(app.backends[name], request, texts)  # type: ignore[index,arg-type]

    hooks = {
        "served_locally": served_locally,
        "local_first": local_first,
        "background": background,
        "score": score,
    }
    return InlineEngine(app.config.inline, generate, **hooks)
