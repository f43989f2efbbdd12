"""A real pygls language server that answers inline completion with several items.

The daemon returns one item today; this stands in for the multi-candidate daemon so that the
editors' count and cycling are tested over real LSP on stdio. It also sends `mlxd/status` ready,
like the daemon. Items: "alpha_<n>", "beta_<n>", "gamma_<n>" at the cursor (n: request count).
"""

from __future__ import annotations

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

server = LanguageServer("several-items", "0")
count = 0


@server.feature(T.INITIALIZED)
def initialized(ls: LanguageServer, _params: T.InitializedParams) -> None:
    ls.protocol.notify("mlxd/status", {"state": "ready", "backends": {"local": "ok"}})


@server.feature(T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionOptions())
def inline_completion(
    _ls: LanguageServer, params: T.InlineCompletionParams
) -> T.InlineCompletionList:
    global count
    count += 1
    at = T.Range(params.position, params.position)
    return T.InlineCompletionList(
        items=[
            T.InlineCompletionItem(insert_text=f"{name}_{count}", range=at)
            for name in ("alpha", "beta", "gamma")
        ]
    )


if __name__ == "__main__":
    server.start_io()
