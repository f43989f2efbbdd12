"""The daemon's services behind the LSP surface: one session's (core.py: App, its documents and
status board) and the process's, shared by the sessions of a shared daemon (process.py).

The errors and results the server maps to the wire are re-exported here: the server sees them
through app's face only.
"""

from ..errors import AllFailed, ConfigError, UnknownBackend, UnknownModel
from ..types import DeltaFn, Message, ModelInfo, Outcome, Request, Status
from .core import App, ConfigSources, Hooks
from .documents import Documents
from .process import Process
from .status import StatusBoard

__all__ = [
    "AllFailed",
    "App",
    "ConfigError",
    "ConfigSources",
    "Hooks",
    "DeltaFn",
    "Documents",
    "Message",
    "ModelInfo",
    "Outcome",
    "Process",
    "Request",
    "Status",
    "StatusBoard",
    "UnknownBackend",
    "UnknownModel",
]
