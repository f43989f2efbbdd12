"""Inline (ghost-text) completion: the engine, its cache and post-processing.

Pure Python: no LSP types and no MLX here. The server converts LSP <-> these types; the prompt's
pieces (cursor context, trimming, FIM templates) come from `mlxd.prompts`.
"""

from .cache import InlineCache
from .engine import EngineStats, InlineEngine, InlineItem
from .postprocess import clean

__all__ = [
    "EngineStats",
    "InlineCache",
    "InlineEngine",
    "InlineItem",
    "clean",
]
