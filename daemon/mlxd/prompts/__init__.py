"""Prompts as pure text: the cursor context, trimming to a token budget, neighbour snippets,
FIM templates. No model, no I/O, no LSP types: the inline engine builds a prompt's pieces with
these, a local backend renders them with its tokenizer's template.
"""

from .context import CursorContext, context_at, cursor_context, opens_block, starts_block
from .counts import COUNTS
from .fim import (
    CODEGEMMA,
    CODELLAMA,
    CODESTRAL,
    DEEPSEEK_CODER,
    QWEN_CODER,
    STARCODER,
    FimTemplate,
    build_prompt,
    by_name,
    comment_line,
    detect,
    display_path,
    file_header,
    format_snippets,
    prompt_for_local,
    trimmed_prompt,
)
from .positions import (
    Encoding,
    apply_selection,
    column_to_offset,
    normalize_encoding,
    offset_to_column,
    offset_to_position,
    position_to_offset,
)
from .snippets import SNIPPET_LINES, Snippet, SnippetIndex, neighbor_snippets
from .trimming import PREFIX_SHARE, SNAP_LINES, TokenCounter, approx_tokens, trim

__all__ = [
    "apply_selection",
    "COUNTS",
    "CODEGEMMA",
    "CODELLAMA",
    "CODESTRAL",
    "DEEPSEEK_CODER",
    "PREFIX_SHARE",
    "QWEN_CODER",
    "SNAP_LINES",
    "SNIPPET_LINES",
    "STARCODER",
    "CursorContext",
    "Encoding",
    "FimTemplate",
    "Snippet",
    "SnippetIndex",
    "TokenCounter",
    "approx_tokens",
    "build_prompt",
    "by_name",
    "column_to_offset",
    "comment_line",
    "context_at",
    "cursor_context",
    "detect",
    "display_path",
    "file_header",
    "trimmed_prompt",
    "format_snippets",
    "neighbor_snippets",
    "normalize_encoding",
    "offset_to_column",
    "offset_to_position",
    "opens_block",
    "position_to_offset",
    "prompt_for_local",
    "starts_block",
    "trim",
]
