"""One request's streamed text as LSP `$/progress` notifications on its partialResultToken.

Values are `{field: text, "backend": name}`, field "delta" (answer) or "reasoning" (chat). A
provider's burst arrives as many deltas in one event-loop turn (a stream read from a full
buffer; the router yields every waits.YIELD_EVERY events); one frame each cost ~270 bytes of
JSON and a serialization, so 32,768 reasoning deltas (the router's cap) sent ~11 MB. The
pieces of one turn go out together: one notification per run of the same field and backend,
in order, at the end of the turn. A local model's tokens arrive one a turn and go out as they
did.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types as T

from ..app import DeltaFn


class ProgressStream:
    """The notifications of one request (`token`: its partialResultToken). `on(field)` is the
    router's DeltaFn for that field; `flush()` sends what is pending now (before the request's
    response, so that every piece precedes it)."""

    def __init__(self, ls: Any, token: Any) -> None:
        self._ls, self._token = ls, token
        self._runs: list[tuple[str, str, list[str]]] = []  # (field, backend, pieces)
        self._due = False  # a flush is scheduled for the end of this turn

    def on(self, field: str) -> DeltaFn:
        def add(text: str, backend: str) -> None:
            if self._runs and self._runs[-1][:2] == (field, backend):
                self._runs[-1][2].append(text)
            else:
                self._runs.append((field, backend, [text]))
            if not self._due:
                self._due = True
                asyncio.get_running_loop().call_soon(self.flush)

        return add

    def flush(self) -> None:
        self._due = False
        runs, self._runs = self._runs, []
        for field, backend, pieces in runs:
            value = {field: "".join(pieces), "backend": backend}
            self._ls.progress(T.ProgressParams(token=self._token, value=value))
