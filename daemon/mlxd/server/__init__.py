"""The LSP server: the server object (lsp.py), its handlers (handlers.py) and their error table (wire_errors.py)."""

from .handlers import FEATURES, register
from .lsp import MlxdProtocol, MlxdServer
from .wire_errors import ERRORS, wire_error

__all__ = ["ERRORS", "FEATURES", "MlxdProtocol", "MlxdServer", "register", "wire_error"]
