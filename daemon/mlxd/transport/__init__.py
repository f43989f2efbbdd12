"""The LSP transport: framing (framing.py), the dispatch rules (dispatch.py), and the one adapter
over pygls' private attributes (pygls_adapter.py)."""

from .dispatch import Dispatcher
from .framing import (
    MAX_BODY,
    MAX_HEADER_LINE,
    protect_stdout,
    read_frames,
    serve_stdio,
    serve_stream,
    serve_tcp,
)
from .pygls_adapter import AdaptedProtocol

__all__ = [
    "MAX_BODY",
    "MAX_HEADER_LINE",
    "AdaptedProtocol",
    "Dispatcher",
    "protect_stdout",
    "read_frames",
    "serve_stdio",
    "serve_stream",
    "serve_tcp",
]
