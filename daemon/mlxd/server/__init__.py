"""The LSP server: the server object (lsp.py) and its handlers (handlers.py)."""

from .handlers import ERRORS, FEATURES, register, wire_error
from .lsp import MlxdProtocol, MlxdServer

__all__ = ["ERRORS", "FEATURES", "MlxdProtocol", "MlxdServer", "register", "wire_error"]
