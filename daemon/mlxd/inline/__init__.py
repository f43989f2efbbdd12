"""Inline (ghost-text) completion: cursor context, FIM prompts, post-processing, cache, engine.

Pure Python: no LSP types and no MLX here. The server converts LSP <-> these types; the local
backend calls `prompt_for_local` with its model's tokenizer.
"""

from .cache import InlineCache
from .context import CursorContext, Snippet, context_at, cursor_context, neighbor_snippets, trim
from .engine import EngineStats, InlineEngine, InlineItem, collect_text
from .fim import FimTemplate, build_prompt, detect, file_header, prompt_for_local
from .postprocess import clean

__all__ = [
    "CursorContext",
    "EngineStats",
    "FimTemplate",
    "InlineCache",
    "InlineEngine",
    "InlineItem",
    "Snippet",
    "build_prompt",
    "clean",
    "collect_text",
    "context_at",
    "cursor_context",
    "detect",
    "file_header",
    "neighbor_snippets",
    "prompt_for_local",
    "trim",
]
