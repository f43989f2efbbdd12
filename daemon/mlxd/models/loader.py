"""Resolve a model spec and load it: the embedded GGUF, an mlx-lm directory, or an HF repo id.

Runs on the caller's thread (the local backend's single MLX thread). Every failure a user can
cause (bad path, missing package, corrupt weights, unknown architecture) becomes a `ModelError`
whose message says what is wrong; the original exception is kept as its cause.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlxd import gemv_forward
from mlxd.blas import fast_blas_loaded
from mlxd.errors import ModelError

from . import download, gguf, prefill_math
from .healing import vocabulary
from .specs import EMBEDDED, EMBEDDED_ENV, INSTALL_HINT, _kind

# "auto" dequantizes on CPU below this size as float (see auto_dequantizes).
AUTO_DEQUANTIZE_MAX_BYTES = 1 << 30

Dequantize = Literal["auto", "always", "never"]
Progress = Callable[[float, str], None]


@dataclass
class LoadedModel:
    name: str
    model: nn.Module  # usable by mlx_lm.stream_generate / generate_step / BatchGenerator
    tokenizer: TokenizerWrapper
    nbytes: int  # bytes of the weights as loaded (after any dequantization), shadows included
    quantized: bool
    source: str  # the file or directory the weights came from
    # What prefill_math swapped into the model's module (load_model's fast_prefill); [] none.
    prefill_math: list[str] = field(default_factory=list)
    # Float matrices whose decode products read their quantized form (gemv_forward.shadow).
    shadows: gemv_forward.Shadows | None = None


def describe(spec: str) -> str:
    """What a spec resolves to, in one line (for `mlxd doctor`); never raises, loads nothing."""
    kind, path = _kind(spec)
    if kind == "embedded":
        if path is None:
            return f"{EMBEDDED}: not installed ({INSTALL_HINT})"
        return f"{EMBEDDED}: embedded SmolLM2-135M-Instruct Q4_1 GGUF at {path}"
    if kind == "gguf":
        return f"{spec}: GGUF file {path}"
    if kind == "dir":
        config = path / "config.json"
        try:
            model_type = json.loads(config.read_text()).get("model_type", "?")
        except (OSError, ValueError):
            return f"{spec}: directory {path} without a readable config.json"
        return f"{spec}: mlx-lm model directory {path} (model_type {model_type})"
    if kind == "hf":
        return f"{spec}: Hugging Face repo id (downloaded into the HF cache on first load)"
    return f"{spec}: model path {path} does not exist"


def load_model(
    spec: str,
    *,
    dequantize: Dequantize = "auto",
    progress: Progress | None = None,
    hub: Mapping[str, str] | None = None,
    fast_prefill: bool = False,
) -> LoadedModel:
    """Load `spec` ("smollm2-135m", an mlx-lm directory, a .gguf file, or an HF repo id; `hub`:
    the environment whose HF_* settings a download follows, see download.hub_options).
    `fast_prefill`: prefill chunks' softmax and SiLU on mlxd's exp (prefill_math.install; the
    daemon's models, not a raw mlx-lm baseline's)."""
    if dequantize not in ("auto", "always", "never"):
        raise ValueError(f"dequantize must be auto, always or never, not {dequantize!r}")
    report = progress or (lambda _f, _m: None)
    kind, path = _kind(spec)
    report(0.0, f"resolving {spec}")
    if kind == "embedded" and path is None:
        override = os.environ.get(EMBEDDED_ENV)
        raise ModelError(
            INSTALL_HINT + (f" ({EMBEDDED_ENV}={override} is not a file)" if override else "")
        )
    if kind == "missing":
        raise ModelError(f"model path {path} does not exist")

    if kind in ("embedded", "gguf"):
        model, tokenizer = _load_gguf(path, report)
    else:
        if kind == "hf":
            report(0.05, f"fetching {spec} from Hugging Face")
            path = download.fetch(
                spec,
                on_bytes=lambda d, t: report(0.05, download.progress_message(spec, d, t)),
                hub=hub,
            )
        model, tokenizer = _load_mlx_dir(path, report)

    forms: dict[str, gemv_forward.Quantized] = {}
    model = _maybe_dequantize(model, dequantize, forms)
    try:
        mx.eval(model.parameters())  # weights may be read lazily: surface I/O errors here
    except RuntimeError as e:
        raise ModelError(f"cannot read the weights in {path}: {e}") from e
    shadows = gemv_forward.shadow(model, forms)
    nbytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    # Token healing's index of the vocabulary (~0.2 s, mostly holding the GIL): built here, not
    # by the first requests after "ready", which stalled the event loop ~100 ms at a time
    # (attack, session 25).
    vocabulary(tokenizer)
    report(1.0, "ready")
    return LoadedModel(
        name=spec,
        model=model,
        tokenizer=tokenizer,
        nbytes=nbytes + (shadows.nbytes if shadows else 0),
        quantized=_is_quantized(model),
        source=str(path),
        prefill_math=prefill_math.install(model) if fast_prefill else [],
        shadows=shadows,
    )


def _load_gguf(path: Path, report: Progress) -> tuple[nn.Module, TokenizerWrapper]:
    report(0.1, f"reading {path.name}")
    tensors, md = gguf.read(path)
    try:
        report(0.5, "building the model")
        model = gguf.build_model(
            gguf.model_args(md, tensors, path), gguf.rename(tensors, path), path
        )
        report(0.9, "building the tokenizer")
        tokenizer = gguf.wrap_tokenizer(gguf.tokenizer_json(md, path), md)
    except (KeyError, TypeError, ValueError) as e:  # missing or malformed metadata
        raise ModelError(f"cannot import GGUF file {path}: {type(e).__name__}: {e}") from e
    return model, tokenizer


def _load_mlx_dir(path: Path, report: Progress) -> tuple[nn.Module, TokenizerWrapper]:
    from mlx_lm.utils import _get_classes, load_tokenizer
    from mlx_lm.utils import load_model as mlx_load_model

    config_file = path / "config.json"
    report(0.1, f"reading {config_file}")
    if not config_file.is_file():
        raise ModelError(f"{path} is not an mlx-lm model directory: no config.json")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {config_file}: {e}") from e
    model_type = config.get("model_type")
    if not model_type:
        raise ModelError(f"{config_file} names no model_type")
    try:
        _get_classes(config)  # mlx-lm's own lookup (model_type, remappings)
    except (ValueError, ImportError) as e:
        raise ModelError(
            f"unsupported model architecture {model_type!r} in {config_file}: {e}"
        ) from e
    if not glob.glob(str(path / "model*.safetensors")):
        raise ModelError(f"no model*.safetensors weights in {path}")

    report(0.2, "loading weights")
    try:
        model, config = mlx_load_model(path)
    except ValueError as e:
        raise ModelError(f"weights in {path} do not fit a {model_type} model: {e}") from e
    except Exception as e:  # mx.load: "[load_safetensors] ..." on a truncated or garbage file
        raise ModelError(f"cannot read the weights in {path}: {e}") from e

    report(0.9, "loading the tokenizer")
    try:
        tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    except Exception as e:
        raise ModelError(f"cannot load the tokenizer in {path}: {e}") from e
    return model, tokenizer


# --- dequantization -------------------------------------------------------------------------
_QUANTIZED = (nn.QuantizedLinear, nn.QuantizedEmbedding)


def _is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, _QUANTIZED) for _, m in model.named_modules())


def float_bytes(model: nn.Module, dtype: mx.Dtype) -> int:
    """Size of the model's weights if every quantized layer were unpacked to `dtype`."""
    elements = 0
    for _, m in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if isinstance(m, _QUANTIZED):
            elements += m.weight.size * 32 // m.bits + (m.bias.size if "bias" in m else 0)
        else:
            elements += sum(v.size for _, v in tree_flatten(m.parameters()))
    return elements * dtype.size


def _float_dtype(model: nn.Module) -> mx.Dtype:
    # CPU: float32, the only type the BLAS path (and fast CPU kernels) handle. GPU: keep the
    # model's own half type (the scales' dtype: float16 for GGUF, float16/bfloat16 for mlx-lm).
    if mx.default_device() == mx.cpu:
        return mx.float32
    for _, m in model.named_modules():
        if isinstance(m, _QUANTIZED):
            return m.scales.dtype
    return mx.float16


def _maybe_dequantize(
    model: nn.Module, choice: Dequantize, forms: dict[str, gemv_forward.Quantized]
) -> nn.Module:
    if choice == "never" or not _is_quantized(model):
        return model
    dtype = _float_dtype(model)
    if choice == "auto" and not auto_dequantizes(float_bytes(model, dtype)):
        return model
    return dequantize_model(model, dtype, forms)


def auto_dequantizes(float_nbytes: int) -> bool:
    """The "auto" rule. On CPU, quantized matmuls bypass BLAS and are slow; float ones are fast
    only on an optimized BLAS. Measured on the embedded model (2 x86 cores): quantized 12 tok/s
    prefill / 9 decode; float32 on OpenBLAS 300 / 14; float32 on reference BLAS 10 / 5.
    On a GPU the quantized kernels win (less memory traffic)."""
    return (
        mx.default_device() == mx.cpu
        and fast_blas_loaded()
        and float_nbytes < AUTO_DEQUANTIZE_MAX_BYTES
    )


def dequantize_model(
    model: nn.Module, dtype: mx.Dtype, forms: dict[str, gemv_forward.Quantized] | None = None
) -> nn.Module:
    """Replace QuantizedLinear / QuantizedEmbedding by float nn.Linear / nn.Embedding, in place;
    `forms` (if given) gets each replaced module's quantized weights by module path, affine mode
    only (gemv_forward.shadow reads them in decode steps)."""
    swaps = []
    for path, m in model.named_modules():
        if not isinstance(m, _QUANTIZED):
            continue
        scales, biases = m.scales, m.get("biases")
        if m.mode == "affine":  # unpack in the target dtype: float16 math on CPU is 3x slower
            scales = scales.astype(dtype)
            biases = None if biases is None else biases.astype(dtype)
        w = mx.dequantize(m.weight, scales, biases, m.group_size, m.bits, m.mode).astype(dtype)
        if forms is not None and m.mode == "affine" and biases is not None:
            forms[path] = gemv_forward.Quantized(m.weight, scales, biases, m.bits, m.group_size)
        if isinstance(m, nn.QuantizedEmbedding):
            new = nn.Embedding(*w.shape)
        else:
            new = nn.Linear(w.shape[1], w.shape[0], bias="bias" in m)
            if "bias" in m:
                new.bias = m.bias.astype(dtype)
        new.weight = w
        swaps.append((path, new))
    model.update_modules(tree_unflatten(swaps))
    if dtype == mx.float32:  # norms etc.: one dtype end to end on CPU
        model.set_dtype(dtype)
    return model
