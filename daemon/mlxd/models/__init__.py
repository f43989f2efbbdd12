"""Local models: loading (the embedded SmolLM2 GGUF, mlx-lm directories, HF repo ids), the pool
of loaded models on one MLX thread, continuous batching and stop matching.

    loaded = load_model("smollm2-135m", dequantize="auto", progress=lambda f, msg: ...)
    mlx_lm.stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=64)

Call `load_model` on the thread that will generate (MLX streams are thread-local).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .answer import CLOSE_THINK, OPEN_THINK, AnswerFilter, Piece, ThinkSplitter
from .batching import BatchEngine, Job
from .blas_threads import openblas_threads
from .budget import (
    BLOCK_LINE_TOKENS,
    LINE_TOKENS,
    MIN_PROMPT_TOKENS,
    RecentPrompts,
    SpeedMeter,
    fits,
    prompt_step,
    warm_rung,
    warm_rungs,
)
from .download import LoadCancelled
from .entry import draft_role
from .healing import Healer, Unhealer, heal_point, healed_prompt, vocabulary
from .hub_env import WindowEnv
from .pool import ModelPool
from .scoring import continuation_logprob, prompt_state
from .specs import EMBEDDED, embedded_model_path, expand_home, resolve_spec
from .stops import END_MARKERS, StopMatcher, StopPolicy, finished_lines, first_lines

if TYPE_CHECKING:
    from .loader import Dequantize, LoadedModel, Progress, describe, load_model

# The loader imports mlx-lm and transformers (most of a daemon's start-up): a daemon that never
# loads a local model (cloud backends only) never imports them.
_FROM_LOADER = {"Dequantize", "LoadedModel", "Progress", "describe", "load_model"}


def __getattr__(name: str) -> Any:
    if name in _FROM_LOADER:
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "continuation_logprob",
    "prompt_state",
    "openblas_threads",
    "WindowEnv",
    "EMBEDDED",
    "BLOCK_LINE_TOKENS",
    "warm_rung",
    "warm_rungs",
    "LINE_TOKENS",
    "MIN_PROMPT_TOKENS",
    "CLOSE_THINK",
    "OPEN_THINK",
    "RecentPrompts",
    "SpeedMeter",
    "fits",
    "prompt_step",
    "AnswerFilter",
    "Piece",
    "ThinkSplitter",
    "BatchEngine",
    "Dequantize",
    "Job",
    "Healer",
    "Unhealer",
    "heal_point",
    "healed_prompt",
    "vocabulary",
    "LoadCancelled",
    "LoadedModel",
    "ModelPool",
    "Progress",
    "StopMatcher",
    "StopPolicy",
    "END_MARKERS",
    "first_lines",
    "describe",
    "embedded_model_path",
    "expand_home",
    "finished_lines",
    "load_model",
    "resolve_spec",
    "draft_role",
]
