"""Model loading: the embedded SmolLM2 GGUF, mlx-lm directories, HF repo ids.

    loaded = load_model("smollm2-135m", dequantize="auto", progress=lambda f, msg: ...)
    mlx_lm.stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=64)

Call `load_model` on the thread that will generate (MLX streams are thread-local).
"""

from .loader import (
    EMBEDDED,
    Dequantize,
    LoadedModel,
    Progress,
    describe,
    embedded_model_path,
    load_model,
)

__all__ = [
    "EMBEDDED",
    "Dequantize",
    "LoadedModel",
    "Progress",
    "describe",
    "embedded_model_path",
    "load_model",
]
