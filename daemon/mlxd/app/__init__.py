"""The daemon's services behind the LSP surface (core.py: App) and its status board (status.py).

The errors and results the server maps to the wire are re-exported here: the server sees them
through app's face only.
"""

from ..errors import AllFailed, ConfigError, UnknownBackend, UnknownModel
from ..types import DeltaFn, Message, ModelInfo, Outcome, Request, Status
from .core import App, ConfigSources, Hooks
from .status import StatusBoard

__all__ = [
    "AllFailed",
    "App",
    "ConfigError",
    "ConfigSources",
    "Hooks",
    "DeltaFn",
    "Message",
    "ModelInfo",
    "Outcome",
    "Request",
    "Status",
    "StatusBoard",
    "UnknownBackend",
    "UnknownModel",
]
